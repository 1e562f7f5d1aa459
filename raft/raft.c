/*
 * The member's lifecycle, the message dispatcher (term rules of §5.1 with
 * PreVote and leader-lease exceptions from dissertation §9.6 and §4.2.3) and
 * the ready/persisted handshake that enforces "persist, then send what
 * depends on it, then apply" (see raft.h).
 *
 * Durability bookkeeping: every change that must be durable before someone
 * relies on it (term, vote, log entries, an installed snapshot) bumps
 * dirty_seq. A message that promises durable state (vote grants, append
 * acks) is queued with need_seq = dirty_seq and released only once the
 * caller has acknowledged a ready with seq >= need_seq.
 */
#include <stdarg.h>
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

void raft_invariant_fail(const struct raft *r, const char *file, int line, const char *cond,
			 const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "raft invariant violated at %s:%d: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (r)
		fprintf(stderr, " [member %llu term %llu commit %llu last %llu]",
			(unsigned long long)r->id, (unsigned long long)r->term,
			(unsigned long long)r->commit,
			(unsigned long long)raft_log_last_index(&r->log));
	fputc('\n', stderr);
	abort();
}

void raft_options_default(struct raft_options *o, uint64_t id)
{
	memset(o, 0, sizeof(*o));
	o->id = id;
	o->election_ticks = 10;
	o->heartbeat_ticks = 1;
	o->prevote = true;
	o->check_quorum = true;
	o->rand_seed = id;
	o->max_msg_entries = 256;
	o->max_msg_bytes = 1u << 20;
	o->max_inflight = 64;
	o->snapshot_chunk = 1u << 20;
	o->max_snapshot = (size_t)4 << 30;
}

uint64_t raft_rand(struct raft *r)
{
	/* splitmix64: deterministic from the seed, no global state. */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void raft_mark_dirty(struct raft *r)
{
	r->dirty_seq++;
}

void raft_set_term(struct raft *r, uint64_t term)
{
	RAFT_INVARIANT(r, term >= r->term, "term would go back from %llu to %llu",
		       (unsigned long long)r->term, (unsigned long long)term);
	if (term == r->term)
		return;
	r->term = term;
	r->vote = 0;
	raft_mark_dirty(r);
}

void raft_set_vote(struct raft *r, uint64_t vote)
{
	if (r->vote == vote)
		return;
	r->vote = vote;
	raft_mark_dirty(r);
}

void raft_commit_to(struct raft *r, uint64_t commit)
{
	RAFT_INVARIANT(r, commit >= r->commit, "commit would go back from %llu to %llu",
		       (unsigned long long)r->commit, (unsigned long long)commit);
	RAFT_INVARIANT(r, commit <= raft_log_last_index(&r->log), "commit %llu beyond log",
		       (unsigned long long)commit);
	r->commit = commit;
}

void raft_on_truncate(struct raft *r, uint64_t index)
{
	RAFT_INVARIANT(r, index > r->commit, "truncating committed entry %llu",
		       (unsigned long long)index);
	if (r->unstable_from > index)
		r->unstable_from = index;
	if (r->stable_index >= index)
		r->stable_index = index - 1;
	raft_mark_dirty(r);
	if (r->members_index >= index)
		raft_conf_reload(r);
}

static bool msg_needs_durability(enum raft_msg_type t)
{
	return t == RAFT_MSG_VOTE || t == RAFT_MSG_VOTE_RESP || t == RAFT_MSG_APPEND_RESP;
}

static bool msg_termless(enum raft_msg_type t)
{
	return t == RAFT_MSG_PROPOSE || t == RAFT_MSG_READ_INDEX || t == RAFT_MSG_READ_INDEX_RESP;
}

void raft_send(struct raft *r, struct raft_msg *m)
{
	struct queued_msg *q;

	m->from = r->id;
	if (msg_termless(m->type))
		m->term = 0;
	else if (m->term == 0)
		m->term = r->term;
	if (r->nout == r->cap_out) {
		size_t cap = r->cap_out ? r->cap_out * 2 : 16;
		struct queued_msg *n = realloc(r->out, cap * sizeof(*n));

		RAFT_INVARIANT(r, n != NULL, "out of memory queueing a message");
		r->out = n;
		r->cap_out = cap;
	}
	q = &r->out[r->nout++];
	q->m = *m;
	q->need_seq = msg_needs_durability(m->type) ? r->dirty_seq : 0;
	memset(m, 0, sizeof(*m));
}

static void img_release(struct raft_snapshot *s)
{
	raft_buf_unref(s->buf);
	memset(s, 0, sizeof(*s));
}

int raft_create(const struct raft_options *o, const struct raft_restore *rs, struct raft **out)
{
	struct raft *r;
	int rc = QFS_EINVAL;

	*out = NULL;
	if (!o->id || !o->heartbeat_ticks || o->election_ticks <= o->heartbeat_ticks ||
	    !o->max_inflight || !o->max_msg_entries || !o->snapshot_chunk)
		return QFS_EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return QFS_ENOMEM;
	r->o = *o;
	r->id = o->id;
	r->rng = o->rand_seed;
	raft_log_init(&r->log);
	if (rs && rs->snapshot && rs->snapshot->index) {
		const struct raft_snapshot *s = rs->snapshot;

		r->log.snap_index = s->index;
		r->log.snap_term = s->term;
		r->snap_members = s->members;
		r->img = *s;
		r->img.buf = s->buf ? raft_buf_ref(s->buf) : raft_buf_new(s->data, s->len);
		if (!r->img.buf) {
			rc = QFS_ENOMEM;
			goto err_log;
		}
		r->img.data = r->img.buf->data;
		r->img.discard_log = false;
		r->snap_durable = s->index;
	}
	if (rs) {
		uint64_t prev_term = r->log.snap_term;

		for (size_t i = 0; i < rs->nentries; i++) {
			const struct raft_entry *e = &rs->entries[i];

			if (e->term < prev_term || e->term == 0 || (e->len && !e->data)) {
				rc = QFS_EINVAL;
				goto err_log;
			}
			if (e->buf) {
				rc = raft_log_append(&r->log, e);
			} else {
				struct raft_entry c = *e;

				c.buf = raft_buf_new(e->data, e->len);
				if (!c.buf) {
					rc = QFS_ENOMEM;
					goto err_log;
				}
				c.data = c.len ? c.buf->data : NULL;
				rc = raft_log_append(&r->log, &c);
				raft_buf_unref(c.buf);
			}
			if (rc)
				goto err_log;
			prev_term = e->term;
		}
		if (rs->hs.term < raft_log_last_term(&r->log)) {
			rc = QFS_EINVAL;
			goto err_log;
		}
		r->term = rs->hs.term;
		r->vote = rs->hs.vote;
		r->commit = rs->hs.commit;
		/* A torn write may have kept entries but not the hard state or the
		 * reverse: clamp into what the log supports. */
		if (r->commit > raft_log_last_index(&r->log))
			r->commit = raft_log_last_index(&r->log);
		if (r->commit < r->log.snap_index)
			r->commit = r->log.snap_index;
	}
	r->hs_handed = (struct raft_hardstate){r->term, r->vote, r->commit};
	r->unstable_from = raft_log_last_index(&r->log) + 1;
	r->stable_index = raft_log_last_index(&r->log);
	r->applied = r->log.snap_index;
	r->role = RAFT_FOLLOWER;
	r->soft_role = RAFT_FOLLOWER;
	r->soft_term = r->term;
	raft_conf_reload(r);
	raft_become_follower(r, r->term, 0);
	*out = r;
	return 0;

err_log:
	raft_log_close(&r->log);
	img_release(&r->img);
	free(r);
	return rc;
}

void raft_destroy(struct raft *r)
{
	if (!r)
		return;
	raft_log_close(&r->log);
	img_release(&r->img);
	for (size_t i = 0; i < r->nprs; i++)
		raft_progress_close(&r->prs[i]);
	for (size_t i = 0; i < r->nout; i++)
		raft_msg_free(&r->out[i].m);
	free(r->out);
	if (r->snap_out) {
		img_release(r->snap_out);
		free(r->snap_out);
	}
	free(r->batches);
	free(r->rstates);
	free(r->reads);
	raft_rx_reset(r);
	free(r);
}

void raft_set_clock(struct raft *r, int64_t now_ns)
{
	r->clock_ns = now_ns;
}

void raft_tick(struct raft *r)
{
	if (r->role == RAFT_LEADER)
		raft_tick_leader(r);
	else
		raft_tick_election(r);
}

static bool valid_type(enum raft_msg_type t)
{
	return t >= RAFT_MSG_APPEND && t < RAFT_MSG_TYPE_END_;
}

/* §5.1: terms order everything; PreVote and the leader lease bend it. */
static bool step_term(struct raft *r, const struct raft_msg *m)
{
	if (m->term > r->term) {
		if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
			bool lease = r->o.check_quorum && r->leader != 0 &&
				     r->election_elapsed < r->o.election_ticks;

			/* §4.2.3: a member that heard from a leader recently
			 * ignores disruptive vote requests. */
			if (lease && !(m->flags & RAFT_MSG_FORCE))
				return false;
		}
		if (m->type == RAFT_MSG_PREVOTE)
			return true;
		if (m->type == RAFT_MSG_PREVOTE_RESP && !(m->flags & RAFT_MSG_REJECT))
			return true;
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
		    m->type == RAFT_MSG_SNAPSHOT)
			raft_become_follower(r, m->term, m->from);
		else
			raft_become_follower(r, m->term, 0);
		return true;
	}
	if (m->term < r->term) {
		if ((r->o.check_quorum || r->o.prevote) &&
		    (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
			/* Tell a stale leader about the newer term. */
			struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from};

			raft_send(r, &resp);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_msg resp = {
			    .type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .flags = RAFT_MSG_REJECT};

			raft_send(r, &resp);
		}
		return false;
	}
	return true;
}

static void follow(struct raft *r, const struct raft_msg *m)
{
	if (r->role != RAFT_FOLLOWER || r->leader != m->from)
		raft_become_follower(r, r->term, m->from);
	r->election_elapsed = 0;
}

static int step_propose(struct raft *r, const struct raft_msg *m)
{
	if (r->role != RAFT_LEADER || r->transferee)
		return 0; /* dropped: the proposer retries */
	for (size_t i = 0; i < m->nentries; i++) {
		const struct raft_entry *e = &m->entries[i];

		if (e->type != RAFT_ENTRY_NORMAL)
			continue;
		if (raft_append_local(r, RAFT_ENTRY_NORMAL, e->data, e->len, e->buf))
			return QFS_ENOMEM;
	}
	return 0;
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
	if (m->to != r->id || m->from == 0 || m->from == r->id || !valid_type(m->type))
		return QFS_EINVAL;
	switch (m->type) {
	case RAFT_MSG_PROPOSE:
		return step_propose(r, m);
	case RAFT_MSG_READ_INDEX:
		if (r->role == RAFT_LEADER)
			raft_read_request(r, m->ctx, m->from);
		return 0;
	case RAFT_MSG_READ_INDEX_RESP:
		raft_read_push_state(r, m->ctx, m->index);
		return 0;
	default:
		break;
	}
	if (m->term == 0)
		return QFS_EINVAL;
	if (!step_term(r, m))
		return 0;
	switch (m->type) {
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		raft_step_vote(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		raft_step_vote_resp(r, m);
		break;
	case RAFT_MSG_APPEND:
		if (r->role == RAFT_LEADER)
			return QFS_EINVAL; /* two leaders in one term: impossible */
		follow(r, m);
		raft_step_append(r, m);
		break;
	case RAFT_MSG_HEARTBEAT:
		if (r->role == RAFT_LEADER)
			return QFS_EINVAL;
		follow(r, m);
		raft_step_heartbeat(r, m);
		break;
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER)
			return QFS_EINVAL;
		follow(r, m);
		raft_step_snapshot(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			raft_step_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER)
			raft_step_heartbeat_resp(r, m);
		break;
	case RAFT_MSG_SNAPSHOT_RESP:
		if (r->role == RAFT_LEADER)
			raft_step_snapshot_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		/* Dissertation §3.10: start an election at once, skipping PreVote. */
		if (raft_promotable(r))
			raft_campaign(r, false, true);
		break;
	default:
		return QFS_EINVAL;
	}
	return 0;
}

int raft_propose(struct raft *r, const uint8_t *data, size_t len)
{
	struct raft_msg m = {.type = RAFT_MSG_PROPOSE};
	struct raft_entry *e;

	if (len > RAFT_MSG_MAX_BYTES - 4096 || (len && !data))
		return QFS_EINVAL;
	if (r->role == RAFT_LEADER) {
		if (r->transferee)
			return QFS_ENOTLEADER;
		return raft_append_local(r, RAFT_ENTRY_NORMAL, data, len, NULL);
	}
	if (!r->leader)
		return QFS_ENOTLEADER;
	e = calloc(1, sizeof(*e));
	if (!e)
		return QFS_ENOMEM;
	e->type = RAFT_ENTRY_NORMAL;
	e->buf = raft_buf_new(data, len);
	if (!e->buf) {
		free(e);
		return QFS_ENOMEM;
	}
	e->data = len ? e->buf->data : NULL;
	e->len = len;
	m.to = r->leader;
	m.entries = e;
	m.nentries = 1;
	raft_send(r, &m);
	return 0;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
	struct raft_msg m = {.type = RAFT_MSG_READ_INDEX, .ctx = ctx};

	if (r->role == RAFT_LEADER) {
		raft_read_request(r, ctx, r->id);
		return 0;
	}
	if (!r->leader)
		return QFS_ENOTLEADER;
	m.to = r->leader;
	raft_send(r, &m);
	return 0;
}

int raft_transfer(struct raft *r, uint64_t to)
{
	struct progress *p;

	if (r->role != RAFT_LEADER)
		return QFS_ENOTLEADER;
	if (to == r->id)
		return 0;
	p = raft_progress_get(r, to);
	if (!p || !p->voter)
		return QFS_EINVAL;
	if (r->transferee == to)
		return 0;
	/* Dissertation §3.10: stop taking proposals, bring the target up to
	 * date, then tell it to time out now. Abandoned after one election
	 * timeout (raft_tick_leader). */
	r->transferee = to;
	r->election_elapsed = 0;
	if (p->match == raft_log_last_index(&r->log)) {
		struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to};

		raft_send(r, &m);
	} else {
		raft_send_append(r, p, true);
	}
	return 0;
}

static int compact_check(const struct raft *r, uint64_t index, uint64_t *term)
{
	if (index > r->applied || index < r->img.index || index < r->log.snap_index)
		return QFS_EINVAL;
	return raft_log_term(&r->log, index, term) ? QFS_EINVAL : 0;
}

int raft_compact_buf(struct raft *r, uint64_t index, struct raft_buf *buf, uint64_t keep)
{
	struct raft_snapshot img = {.index = index, .len = buf->len, .data = buf->data, .buf = buf};
	uint64_t upto = index > keep ? index - keep : 0;

	if (compact_check(r, index, &img.term)) {
		raft_buf_unref(buf);
		return QFS_EINVAL;
	}
	raft_conf_at(r, index, &img.members);
	img_release(&r->img);
	r->img = img;
	if (r->snap_durable < index)
		r->snap_durable = index;
	if (upto > r->log.snap_index) {
		raft_conf_at(r, upto, &r->snap_members);
		raft_log_compact(&r->log, upto);
	}
	return 0;
}

int raft_compact(struct raft *r, uint64_t index, const uint8_t *data, size_t len, uint64_t keep)
{
	struct raft_buf *buf;
	uint64_t term;

	if ((len && !data) || compact_check(r, index, &term))
		return QFS_EINVAL;
	buf = raft_buf_new(data, len);
	if (!buf)
		return QFS_ENOMEM;
	return raft_compact_buf(r, index, buf, keep);
}

int raft_members_at(const struct raft *r, uint64_t index, struct raft_members *out)
{
	if (index < r->log.snap_index || index > raft_log_last_index(&r->log))
		return QFS_ENOENT;
	raft_conf_at(r, index, out);
	return 0;
}

/* ---- ready / persisted ---------------------------------------------------- */

static uint64_t apply_limit(const struct raft *r)
{
	/* A received snapshot is loaded once durable; nothing after it may be
	 * applied before that. */
	if (r->img.index > r->snap_durable)
		return r->applied;
	return r->commit < r->stable_index ? r->commit : r->stable_index;
}

static bool hs_differs(const struct raft *r)
{
	return r->term != r->hs_handed.term || r->vote != r->hs_handed.vote ||
	       r->commit != r->hs_handed.commit;
}

bool raft_has_ready(const struct raft *r)
{
	if (r->bcast_pending || r->read_pending || hs_differs(r) || r->snap_out || r->nrstates ||
	    r->unstable_from <= raft_log_last_index(&r->log) || r->applied < apply_limit(r))
		return true;
	if (r->role != r->soft_role || r->leader != r->soft_leader || r->term != r->soft_term)
		return true;
	for (size_t i = 0; i < r->nout; i++)
		if (r->out[i].need_seq <= r->persisted_seq)
			return true;
	return false;
}

static struct raft_entry *copy_entries(const struct raft *r, uint64_t from, uint64_t to, size_t *n)
{
	struct raft_entry *a;

	*n = 0;
	if (from > to)
		return NULL;
	a = calloc(to - from + 1, sizeof(*a));
	RAFT_INVARIANT(r, a != NULL, "out of memory building a ready");
	for (uint64_t i = from; i <= to; i++)
		raft_entry_copy(&a[(*n)++], raft_log_get(&r->log, i));
	return a;
}

int raft_ready_get(struct raft *r, struct raft_ready *rd)
{
	uint64_t last, lim;
	size_t k = 0;
	bool persist;

	memset(rd, 0, sizeof(*rd));
	if (r->bcast_pending && r->role == RAFT_LEADER)
		raft_bcast_append(r);
	r->bcast_pending = false;
	if (r->read_pending && r->role == RAFT_LEADER)
		raft_bcast_heartbeat(r, r->read_seq);
	r->read_pending = false;
	last = raft_log_last_index(&r->log);

	rd->seq = r->dirty_seq;
	if (hs_differs(r)) {
		rd->hs_changed = true;
		r->hs_handed = (struct raft_hardstate){r->term, r->vote, r->commit};
	}
	rd->hs = r->hs_handed;
	rd->snapshot = r->snap_out;
	r->snap_out = NULL;
	if (r->unstable_from <= last) {
		rd->entries = copy_entries(r, r->unstable_from, last, &rd->nentries);
		r->unstable_from = last + 1;
	}
	persist = rd->hs_changed || rd->snapshot || rd->nentries;
	if (persist) {
		if (r->nbatches == r->cap_batches) {
			size_t cap = r->cap_batches ? r->cap_batches * 2 : 8;
			struct batch *b = realloc(r->batches, cap * sizeof(*b));

			RAFT_INVARIANT(r, b != NULL, "out of memory");
			r->batches = b;
			r->cap_batches = cap;
		}
		r->batches[r->nbatches++] = (struct batch){
		    .seq = rd->seq,
		    .last_index = last,
		    .last_term = raft_log_last_term(&r->log),
		    .snap_index = rd->snapshot ? rd->snapshot->index : 0,
		};
	}

	/* Messages whose durability prerequisites are met, in queue order. */
	for (size_t i = 0; i < r->nout; i++)
		if (r->out[i].need_seq <= r->persisted_seq)
			k++;
	if (k) {
		size_t j = 0, keep = 0;

		rd->msgs = calloc(k, sizeof(*rd->msgs));
		RAFT_INVARIANT(r, rd->msgs != NULL, "out of memory");
		for (size_t i = 0; i < r->nout; i++) {
			if (r->out[i].need_seq <= r->persisted_seq)
				rd->msgs[j++] = r->out[i].m;
			else
				r->out[keep++] = r->out[i];
		}
		rd->nmsgs = j;
		r->nout = keep;
	}

	lim = apply_limit(r);
	if (r->applied < lim) {
		rd->committed = copy_entries(r, r->applied + 1, lim, &rd->ncommitted);
		r->applied = lim;
	}
	if (r->nrstates) {
		rd->reads = r->rstates;
		rd->nreads = r->nrstates;
		r->rstates = NULL;
		r->nrstates = r->cap_rstates = 0;
	}
	rd->role = r->role;
	rd->leader = r->leader;
	rd->term = r->term;
	rd->soft_changed =
	    r->role != r->soft_role || r->leader != r->soft_leader || r->term != r->soft_term;
	r->soft_role = r->role;
	r->soft_leader = r->leader;
	r->soft_term = r->term;
	return 0;
}

void raft_ready_free(struct raft_ready *rd)
{
	for (size_t i = 0; i < rd->nentries; i++)
		raft_entry_release(&rd->entries[i]);
	free(rd->entries);
	for (size_t i = 0; i < rd->ncommitted; i++)
		raft_entry_release(&rd->committed[i]);
	free(rd->committed);
	for (size_t i = 0; i < rd->nmsgs; i++)
		raft_msg_free(&rd->msgs[i]);
	free(rd->msgs);
	free(rd->reads);
	if (rd->snapshot) {
		img_release(rd->snapshot);
		free(rd->snapshot);
	}
	memset(rd, 0, sizeof(*rd));
}

void raft_persisted(struct raft *r, uint64_t seq)
{
	size_t keep = 0;
	uint64_t t;

	if (seq > r->dirty_seq)
		seq = r->dirty_seq;
	if (seq > r->persisted_seq)
		r->persisted_seq = seq;
	for (size_t i = 0; i < r->nbatches; i++) {
		struct batch *b = &r->batches[i];
		bool ok;

		if (b->seq > seq) {
			r->batches[keep++] = *b;
			continue;
		}
		if (b->snap_index && b->snap_index > r->snap_durable &&
		    b->snap_index <= r->log.snap_index)
			r->snap_durable = b->snap_index;
		/* The log may have been truncated and rewritten since: only claim
		 * durability if the same (index, term) is still there. */
		if (b->last_index <= r->log.snap_index)
			ok = b->last_index <= r->snap_durable;
		else
			ok = raft_log_term(&r->log, b->last_index, &t) == 0 && t == b->last_term;
		if (ok && b->last_index > r->stable_index)
			r->stable_index = b->last_index;
	}
	r->nbatches = keep;
	if (r->role == RAFT_LEADER && raft_maybe_commit(r))
		r->bcast_pending = true;
}

/* ---- introspection -------------------------------------------------------- */

void raft_status_get(const struct raft *r, struct raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->leader = r->leader;
	st->commit = r->commit;
	st->applied = r->applied;
	st->first_index = r->log.snap_index + 1;
	st->last_index = raft_log_last_index(&r->log);
	st->stable_index = r->stable_index;
	st->snapshot_index = r->log.snap_index;
	st->snapshot_term = r->log.snap_term;
	st->transferee = r->transferee;
	st->members = r->members;
	for (uint32_t i = 0; i < r->members.n; i++) {
		for (size_t j = 0; j < r->nprs; j++)
			if (r->prs[j].id == r->members.m[i].id)
				st->match[i] =
				    r->prs[j].id == r->id ? r->stable_index : r->prs[j].match;
	}
}

int raft_term_at(const struct raft *r, uint64_t index, uint64_t *term)
{
	return raft_log_term(&r->log, index, term);
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
	return raft_log_get(&r->log, index);
}
