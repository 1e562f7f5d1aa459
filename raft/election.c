/*
 * Leader election (§5.2) with randomized timeouts, PreVote (dissertation
 * §9.6: a would-be candidate first asks whether it could win, so a member
 * that was cut off does not bump everyone's term when it returns), and
 * CheckQuorum (§6.2: a leader that has not heard from a quorum within an
 * election timeout steps down, which also makes the leader lease used in
 * step_term() safe).
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

static void reset_timers(struct raft *r)
{
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	/* §5.2: randomized in [election, 2 * election) to split votes rarely. */
	r->rand_timeout = r->o.election_ticks + (unsigned)(raft_rand(r) % r->o.election_ticks);
}

static void reset_votes(struct raft *r)
{
	r->ngranted = r->nrejected = 0;
}

bool raft_promotable(const struct raft *r)
{
	return raft_is_voter(r, r->id);
}

bool raft_quorum_has(const struct raft *r, const uint64_t *ids, size_t n)
{
	size_t voters = raft_members_voters(&r->members), k = 0;

	if (voters == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (raft_is_voter(r, ids[i]))
			k++;
	return k >= voters / 2 + 1;
}

void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
	bool was_leader = r->role == RAFT_LEADER;

	raft_set_term(r, term);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->transferee = 0;
	r->bcast_pending = false;
	r->read_pending = false;
	reset_votes(r);
	reset_timers(r);
	if (was_leader) {
		raft_read_drop(r);
		for (size_t i = 0; i < r->nprs; i++)
			raft_progress_close(&r->prs[i]);
		r->nprs = 0;
	}
}

void raft_become_leader(struct raft *r)
{
	uint64_t last = raft_log_last_index(&r->log);

	r->role = RAFT_LEADER;
	r->leader = r->id;
	r->transferee = 0;
	reset_votes(r);
	reset_timers(r);
	for (size_t i = 0; i < r->nprs; i++)
		raft_progress_close(&r->prs[i]);
	r->nprs = 0;
	raft_progress_sync(r);
	for (size_t i = 0; i < r->nprs; i++) {
		r->prs[i].next = last + 1;
		r->prs[i].match = 0;
	}
	/* §8: a new leader commits a no-op to learn what is committed and to
	 * make entries of earlier terms committable (§5.4.2). */
	raft_append_local(r, RAFT_ENTRY_NOOP, NULL, 0, NULL);
}

static void record_vote(struct raft *r, uint64_t id, bool granted)
{
	uint64_t *a = granted ? r->votes_granted : r->votes_rejected;
	size_t *n = granted ? &r->ngranted : &r->nrejected;

	for (size_t i = 0; i < r->ngranted; i++)
		if (r->votes_granted[i] == id)
			return;
	for (size_t i = 0; i < r->nrejected; i++)
		if (r->votes_rejected[i] == id)
			return;
	if (*n < RAFT_MAX_MEMBERS)
		a[(*n)++] = id;
}

void raft_campaign(struct raft *r, bool pre, bool force)
{
	uint64_t last = raft_log_last_index(&r->log), lterm = raft_log_last_term(&r->log);

	if (r->role == RAFT_LEADER || !raft_promotable(r))
		return;
	reset_votes(r);
	reset_timers(r);
	r->leader = 0;
	if (pre) {
		r->role = RAFT_PRECANDIDATE;
	} else {
		raft_set_term(r, r->term + 1);
		raft_set_vote(r, r->id);
		r->role = RAFT_CANDIDATE;
	}
	record_vote(r, r->id, true);
	if (raft_quorum_has(r, r->votes_granted, r->ngranted)) {
		if (pre)
			raft_campaign(r, false, force);
		else
			raft_become_leader(r);
		return;
	}
	for (uint32_t i = 0; i < r->members.n; i++) {
		const struct raft_member *mb = &r->members.m[i];
		struct raft_msg m = {.to = mb->id, .index = last, .log_term = lterm};

		if (!mb->voter || mb->id == r->id)
			continue;
		if (pre) {
			m.type = RAFT_MSG_PREVOTE;
			m.term = r->term + 1;
		} else {
			m.type = RAFT_MSG_VOTE;
			m.flags = force ? RAFT_MSG_FORCE : 0;
		}
		raft_send(r, &m);
	}
}

void raft_tick_election(struct raft *r)
{
	r->election_elapsed++;
	if (raft_promotable(r) && r->election_elapsed >= r->rand_timeout)
		raft_campaign(r, r->o.prevote, false);
}

void raft_tick_leader(struct raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->o.election_ticks) {
		r->election_elapsed = 0;
		if (r->o.check_quorum) {
			uint64_t active[RAFT_MAX_MEMBERS];
			size_t n = 0;

			for (size_t i = 0; i < r->nprs; i++)
				if (r->prs[i].id == r->id || r->prs[i].recent_active)
					active[n++] = r->prs[i].id;
			if (!raft_quorum_has(r, active, n)) {
				raft_become_follower(r, r->term, 0);
				return;
			}
			for (size_t i = 0; i < r->nprs; i++)
				r->prs[i].recent_active = false;
		}
		r->transferee = 0; /* a transfer that did not finish is abandoned */
	}
	if (r->heartbeat_elapsed >= r->o.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		raft_bcast_heartbeat(r, r->read_seq);
		for (size_t i = 0; i < r->nprs; i++)
			if (r->prs[i].state == PR_SNAPSHOT && r->prs[i].id != r->id)
				raft_snapshot_resend(r, &r->prs[i]);
	}
}

/* §5.2, §5.4.1: grant if we have not voted for someone else this term and
 * the candidate's log is at least as up to date. PreVote grants change
 * nothing. */
void raft_step_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	struct raft_msg resp = {.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
				.to = m->from};
	bool can =
	    r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);

	if (can && raft_log_up_to_date(&r->log, m->index, m->log_term)) {
		resp.term = m->term;
		if (!pre) {
			r->election_elapsed = 0;
			raft_set_vote(r, m->from);
		}
	} else {
		resp.flags = RAFT_MSG_REJECT;
	}
	raft_send(r, &resp);
}

void raft_step_vote_resp(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE_RESP;

	if ((pre && r->role != RAFT_PRECANDIDATE) || (!pre && r->role != RAFT_CANDIDATE))
		return;
	/* A granted PreVote answers for term + 1; anything else must match. */
	if (!(m->flags & RAFT_MSG_REJECT) && m->term != (pre ? r->term + 1 : r->term))
		return;
	record_vote(r, m->from, !(m->flags & RAFT_MSG_REJECT));
	if (raft_quorum_has(r, r->votes_granted, r->ngranted)) {
		if (pre)
			raft_campaign(r, false, false);
		else
			raft_become_leader(r);
	} else if (raft_quorum_has(r, r->votes_rejected, r->nrejected)) {
		raft_become_follower(r, r->term, 0);
	}
}

void raft_leader_unreachable(struct raft *r)
{
	unsigned delay;

	if (r->role != RAFT_FOLLOWER || !r->leader)
		return;
	r->leader = 0;
	delay =
	    1 + (unsigned)(raft_rand(r) % (r->o.election_ticks / 2 ? r->o.election_ticks / 2 : 1));
	if (r->rand_timeout > delay && r->election_elapsed < r->rand_timeout - delay)
		r->election_elapsed = r->rand_timeout - delay;
}
