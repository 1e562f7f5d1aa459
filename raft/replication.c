/*
 * Log replication (§5.3) and InstallSnapshot (§7). The leader batches new
 * entries into APPENDs (up to max_msg_entries / max_msg_bytes), pipelines
 * them per follower within its flow-control window (progress.c), commits by
 * counting only entries of its own term (§5.4.2), and sends a snapshot in
 * chunks, one in flight at a time, to a follower whose next entry has been
 * compacted away. Followers check log matching, truncate conflicts (never a
 * committed entry) and acknowledge only what they will have made durable.
 */
#include <stdbool.h>
#include <string.h>

#include "../common/codec.h"
#include "../common/errors.h"
#include "internal.h"

int raft_append_local(struct raft *r, enum raft_entry_type type, const uint8_t *data, size_t len,
		      struct raft_buf *buf)
{
	struct raft_entry e = {
	    .index = raft_log_last_index(&r->log) + 1, .term = r->term, .type = type, .len = len};
	int rc;

	bool stamp = type == RAFT_ENTRY_NORMAL && r->o.stamp_offset &&
		     len >= r->o.stamp_offset + 8;

	/* Share the caller's buffer when the bytes live in it (a forwarded
	 * proposal) and stay as they are, copy otherwise. */
	if (!stamp && buf && len && data >= buf->data && data + len <= buf->data + buf->len)
		e.buf = raft_buf_ref(buf);
	else
		e.buf = raft_buf_new(data, len);
	if (!e.buf)
		return QFS_ENOMEM;
	e.data = !len ? NULL : e.buf == buf ? data : e.buf->data;
	if (stamp) /* the leader's time: entry times are cluster time */
		qfs_le64_put(e.buf->data + r->o.stamp_offset, (uint64_t)r->clock_ns);
	rc = raft_log_append(&r->log, &e);
	raft_buf_unref(e.buf);
	if (rc)
		return rc;
	raft_mark_dirty(r);
	raft_conf_on_append(r, raft_log_get(&r->log, e.index));
	r->bcast_pending = true;
	return 0;
}

static void send_snapshot_chunk(struct raft *r, struct progress *p)
{
	struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT, .to = p->id};
	size_t n;

	RAFT_INVARIANT(r, r->img.buf != NULL, "follower %llu needs a snapshot but none exists",
		       (unsigned long long)p->id);
	if (p->state != PR_SNAPSHOT || p->snap_index != r->img.index)
		raft_progress_become_snapshot(p, r->img.index);
	if (p->snap_offset > r->img.len)
		p->snap_offset = 0;
	n = r->img.len - p->snap_offset;
	if (n > r->o.snapshot_chunk)
		n = r->o.snapshot_chunk;
	m.snap.index = r->img.index;
	m.snap.term = r->img.term;
	m.snap.members = r->img.members;
	m.offset = p->snap_offset;
	m.total = r->img.len;
	m.buf = raft_buf_ref(r->img.buf);
	m.data = n ? r->img.data + p->snap_offset : NULL;
	m.len = n;
	if (p->snap_offset + n == r->img.len)
		m.flags = RAFT_MSG_DONE;
	raft_send(r, &m);
}

void raft_snapshot_resend(struct raft *r, struct progress *p)
{
	send_snapshot_chunk(r, p);
}

bool raft_send_append(struct raft *r, struct progress *p, bool send_empty)
{
	struct raft_msg m = {.type = RAFT_MSG_APPEND, .to = p->id};
	uint64_t prev = p->next - 1, last = raft_log_last_index(&r->log), bytes = 0;
	size_t n = 0;

	if (p->id == r->id || raft_progress_paused(p))
		return false;
	if (raft_log_term(&r->log, prev, &m.log_term)) {
		/* The entries it needs are compacted: §7 InstallSnapshot. */
		raft_progress_become_snapshot(p, r->img.index);
		send_snapshot_chunk(r, p);
		return true;
	}
	while (p->next + n <= last && n < r->o.max_msg_entries) {
		const struct raft_entry *e = raft_log_get(&r->log, p->next + n);

		if (n && bytes + e->len > r->o.max_msg_bytes)
			break;
		bytes += e->len;
		n++;
	}
	if (!n && !send_empty)
		return false;
	m.index = prev;
	m.commit = r->commit;
	if (n) {
		m.entries = calloc(n, sizeof(*m.entries));
		RAFT_INVARIANT(r, m.entries != NULL, "out of memory");
		for (size_t i = 0; i < n; i++)
			raft_entry_copy(&m.entries[i], raft_log_get(&r->log, p->next + i));
		m.nentries = n;
	}
	raft_progress_sent(p, prev + n, n);
	raft_send(r, &m);
	return true;
}

void raft_bcast_append(struct raft *r)
{
	for (size_t i = 0; i < r->nprs; i++) {
		struct progress *p = &r->prs[i];
		bool sent = false;

		if (p->id == r->id)
			continue;
		while (raft_send_append(r, p, false))
			sent = true;
		if (!sent)
			raft_send_append(r, p, true); /* carries the commit index */
	}
}

void raft_bcast_heartbeat(struct raft *r, uint64_t ctx)
{
	for (size_t i = 0; i < r->nprs; i++) {
		struct progress *p = &r->prs[i];
		struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = p->id, .ctx = ctx};

		if (p->id == r->id)
			continue;
		/* Only what the follower is known to hold may be committed there. */
		m.commit = p->match < r->commit ? p->match : r->commit;
		raft_send(r, &m);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* §5.3, §5.4.2: the highest index stored on a quorum of voters, committed
 * only if it is from the current term (by counting replicas). */
bool raft_maybe_commit(struct raft *r)
{
	uint64_t m[RAFT_MAX_MEMBERS], n = 0, t;
	size_t voters = raft_members_voters(&r->members);
	uint64_t idx;

	if (r->role != RAFT_LEADER || voters == 0)
		return false;
	for (size_t i = 0; i < r->nprs; i++) {
		if (!r->prs[i].voter)
			continue;
		m[n++] = r->prs[i].id == r->id ? r->stable_index : r->prs[i].match;
	}
	if (n < voters / 2 + 1)
		return false;
	qsort(m, n, sizeof(m[0]), cmp_desc);
	idx = m[voters / 2];
	if (idx <= r->commit || raft_log_term(&r->log, idx, &t) || t != r->term)
		return false;
	raft_commit_to(r, idx);
	raft_conf_on_commit(r);
	if (r->role == RAFT_LEADER)
		raft_read_on_commit(r);
	return true;
}

/* Follower side of a rejected APPEND: the largest index <= index whose term
 * is <= term, so the leader can skip a whole term per round trip. */
static uint64_t conflict_hint(const struct raft *r, uint64_t index, uint64_t term)
{
	uint64_t last = raft_log_last_index(&r->log), t;

	if (index > last)
		index = last;
	while (index > r->log.snap_index) {
		raft_log_term(&r->log, index, &t);
		if (t <= term)
			break;
		index--;
	}
	return index;
}

static bool append_valid(const struct raft_msg *m)
{
	uint64_t prev_term = m->log_term;

	if (m->log_term > m->term)
		return false;
	for (size_t i = 0; i < m->nentries; i++) {
		const struct raft_entry *e = &m->entries[i];

		if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term ||
		    e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_NOOP ||
		    (e->len && !e->data))
			return false;
		prev_term = e->term;
	}
	return true;
}

static void check_same_entry(const struct raft *r, const struct raft_entry *have,
			     const struct raft_entry *got)
{
	/* Log Matching (§5.3): same index and term means same entry. */
	RAFT_INVARIANT(r,
		       have->type == got->type && have->len == got->len &&
			   (have->len == 0 || memcmp(have->data, got->data, have->len) == 0),
		       "log matching: entry %llu term %llu differs from the leader's",
		       (unsigned long long)have->index, (unsigned long long)have->term);
}

void raft_step_append(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from};
	uint64_t t, last_new;

	if (!append_valid(m))
		return;
	if (m->index < r->commit) {
		/* Already have everything up to commit; tell the leader. */
		resp.index = r->commit;
		raft_send(r, &resp);
		return;
	}
	if (raft_log_term(&r->log, m->index, &t) || t != m->log_term) {
		resp.flags = RAFT_MSG_REJECT;
		resp.index = m->index;
		resp.hint = conflict_hint(r, m->index, m->log_term);
		raft_send(r, &resp);
		return;
	}
	for (size_t i = 0; i < m->nentries; i++) {
		const struct raft_entry *e = &m->entries[i];
		const struct raft_entry *have = raft_log_get(&r->log, e->index);

		if (have && have->term == e->term) {
			check_same_entry(r, have, e);
			continue;
		}
		if (have) {
			raft_log_truncate(&r->log, e->index);
			raft_on_truncate(r, e->index);
		}
		if (e->buf) {
			raft_log_append(&r->log, e);
		} else {
			struct raft_entry c = *e;

			c.buf = raft_buf_new(e->data, e->len);
			RAFT_INVARIANT(r, c.buf != NULL, "out of memory");
			c.data = c.len ? c.buf->data : NULL;
			raft_log_append(&r->log, &c);
			raft_buf_unref(c.buf);
		}
		raft_mark_dirty(r);
		raft_conf_on_append(r, raft_log_get(&r->log, e->index));
	}
	last_new = m->index + m->nentries;
	if (m->commit > r->commit && last_new > r->commit)
		raft_commit_to(r, m->commit < last_new ? m->commit : last_new);
	resp.index = last_new;
	raft_send(r, &resp);
}

static void maybe_transfer(struct raft *r, struct progress *p)
{
	if (r->transferee == p->id && p->match == raft_log_last_index(&r->log)) {
		struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = p->id};

		raft_send(r, &m);
	}
}

void raft_step_append_resp(struct raft *r, const struct raft_msg *m)
{
	struct progress *p = raft_progress_get(r, m->from);

	if (!p || p->id == r->id)
		return;
	p->recent_active = true;
	if (m->flags & RAFT_MSG_REJECT) {
		if (p->state == PR_REPLICATE) {
			if (m->index <= p->match && m->hint >= p->match)
				return; /* stale */
			if (m->hint < p->match)
				p->match = m->hint; /* it lost its log: see below */
			raft_progress_become_probe(p);
		} else if (p->state == PR_PROBE) {
			uint64_t next;

			if (p->next - 1 != m->index)
				return; /* stale */
			/* A follower without entries it acknowledged (its data dir
			 * was wiped and it restarted under the same name) starts
			 * over from what it has, likely by snapshot. Commit does
			 * not move back: the entries are on a majority still. */
			if (m->hint < p->match)
				p->match = m->hint;
			next = m->hint + 1 < m->index ? m->hint + 1 : m->index;
			if (next < p->match + 1)
				next = p->match + 1;
			p->next = next;
			p->probe_sent = false;
		} else {
			return;
		}
		raft_send_append(r, p, true);
		return;
	}
	if (m->index > raft_log_last_index(&r->log))
		return; /* not from this term's log: ignore */
	if (raft_progress_update(p, m->index) || (p->state == PR_PROBE && m->index == p->match)) {
		if (p->state == PR_PROBE)
			raft_progress_become_replicate(p);
		else if (p->state == PR_SNAPSHOT && p->match >= p->snap_index)
			raft_progress_become_probe(p);
		else if (p->state == PR_REPLICATE)
			raft_progress_free_to(p, m->index);
		if (raft_maybe_commit(r) && r->role == RAFT_LEADER)
			raft_bcast_append(r);
		if (r->role != RAFT_LEADER)
			return;
		while (raft_send_append(r, p, false))
			;
		maybe_transfer(r, p);
	}
}

void raft_step_heartbeat(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .ctx = m->ctx};
	uint64_t c = m->commit, last = raft_log_last_index(&r->log);

	if (c > last)
		c = last;
	if (c > r->commit)
		raft_commit_to(r, c);
	raft_send(r, &resp);
}

void raft_step_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
	struct progress *p = raft_progress_get(r, m->from);

	if (!p || p->id == r->id)
		return;
	p->recent_active = true;
	p->probe_sent = false;
	/* APPENDs may have been lost: let one more go out, so a gap shows up
	 * as a rejection and the follower drops back to probing. */
	if (p->state == PR_REPLICATE && p->in_count == p->in_cap) {
		p->in_start = (p->in_start + 1) % p->in_cap;
		p->in_count--;
	}
	if (m->ctx > p->read_ack) {
		p->read_ack = m->ctx;
		raft_read_on_ack(r);
		if (r->role != RAFT_LEADER)
			return;
	}
	if (p->match < raft_log_last_index(&r->log))
		raft_send_append(r, p, true);
}

void raft_rx_reset(struct raft *r)
{
	free(r->rx_data);
	r->rx_data = NULL;
	r->rx_len = 0;
	r->rx_index = r->rx_term = r->rx_total = r->rx_from = 0;
}

/* §7: adopt a complete snapshot from the leader. */
static void install_snapshot(struct raft *r)
{
	struct raft_snapshot *out;
	uint64_t S = r->rx_index, T = r->rx_term, t;
	bool keep = raft_log_term(&r->log, S, &t) == 0 && t == T;
	struct raft_buf *buf = raft_buf_new(r->rx_data, r->rx_len);

	RAFT_INVARIANT(r, buf != NULL, "out of memory");
	if (keep) {
		/* Log Matching: the suffix after (S, T) is still valid. */
		raft_log_compact(&r->log, S);
	} else {
		raft_log_reset(&r->log, S, T);
		if (r->stable_index > S)
			r->stable_index = S;
		r->unstable_from = S + 1;
	}
	if (r->unstable_from < S + 1)
		r->unstable_from = S + 1;
	r->snap_members = r->rx_members;
	raft_commit_to(r, S);
	r->applied = S;
	raft_buf_unref(r->img.buf);
	r->img = (struct raft_snapshot){.index = S,
					.term = T,
					.members = r->rx_members,
					.data = buf->data,
					.len = r->rx_len,
					.buf = buf};
	raft_conf_reload(r);
	out = calloc(1, sizeof(*out));
	RAFT_INVARIANT(r, out != NULL, "out of memory");
	*out = r->img;
	out->buf = raft_buf_ref(buf);
	out->discard_log = !keep;
	if (r->snap_out) {
		/* An older one not yet handed out: superseded. */
		out->discard_log |= r->snap_out->discard_log;
		raft_buf_unref(r->snap_out->buf);
		free(r->snap_out);
	}
	r->snap_out = out;
	raft_mark_dirty(r);
	raft_rx_reset(r);
}

void raft_step_snapshot(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg resp = {
	    .type = RAFT_MSG_SNAPSHOT_RESP, .to = m->from, .index = m->snap.index};
	size_t cap;

	if (m->snap.index == 0 || m->snap.term > m->term || m->offset > m->total ||
	    m->len > m->total - m->offset)
		return;
	if (m->snap.index <= r->commit) {
		struct raft_msg ack = {
		    .type = RAFT_MSG_APPEND_RESP, .to = m->from, .index = r->commit};

		raft_rx_reset(r);
		raft_send(r, &ack);
		return;
	}
	if (m->total > r->o.max_snapshot)
		return;
	if (r->rx_index != m->snap.index || r->rx_term != m->snap.term || r->rx_total != m->total ||
	    r->rx_from != m->from) {
		if (m->offset != 0) {
			resp.offset = 0;
			raft_send(r, &resp);
			return;
		}
		raft_rx_reset(r);
		r->rx_index = m->snap.index;
		r->rx_term = m->snap.term;
		r->rx_total = m->total;
		r->rx_from = m->from;
		r->rx_members = m->snap.members;
	}
	if (m->offset != r->rx_len) {
		resp.offset = r->rx_len;
		raft_send(r, &resp);
		return;
	}
	/* Grow with the data actually received, never by the claimed total. */
	if (m->len) {
		cap = r->rx_len + m->len;
		uint8_t *nd = realloc(r->rx_data, cap);

		RAFT_INVARIANT(r, nd != NULL, "out of memory receiving a snapshot");
		r->rx_data = nd;
		memcpy(r->rx_data + r->rx_len, m->data, m->len);
		r->rx_len += m->len;
	}
	if (!(m->flags & RAFT_MSG_DONE)) {
		resp.offset = r->rx_len;
		raft_send(r, &resp);
		return;
	}
	if (r->rx_len != r->rx_total) {
		raft_rx_reset(r);
		return;
	}
	install_snapshot(r);
	resp.type = RAFT_MSG_APPEND_RESP;
	resp.index = m->snap.index;
	raft_send(r, &resp);
}

void raft_step_snapshot_resp(struct raft *r, const struct raft_msg *m)
{
	struct progress *p = raft_progress_get(r, m->from);

	if (!p || p->id == r->id)
		return;
	p->recent_active = true;
	if (p->state != PR_SNAPSHOT || m->index != p->snap_index || m->index != r->img.index)
		return;
	if (m->offset == p->snap_offset && m->offset != 0)
		return; /* duplicate ack */
	p->snap_offset = m->offset;
	send_snapshot_chunk(r, p);
}
