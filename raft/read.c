/*
 * ReadIndex (dissertation §6.4). The leader notes its commit index for a
 * read, makes sure it is still the leader by a heartbeat round a quorum
 * acknowledges (ctx = read_seq of that round), and only then answers: the
 * state machine at that index reflects every write that completed before
 * the read started. A new leader first waits until an entry of its own term
 * is committed (§6.4 step 1), so its commit index is at least as new as any
 * earlier leader's. Followers and learners forward (raft_read_index).
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

void raft_read_push_state(struct raft *r, uint64_t ctx, uint64_t index)
{
	if (r->nrstates == r->cap_rstates) {
		size_t cap = r->cap_rstates ? r->cap_rstates * 2 : 8;
		struct raft_read_state *n = realloc(r->rstates, cap * sizeof(*n));

		RAFT_INVARIANT(r, n != NULL, "out of memory");
		r->rstates = n;
		r->cap_rstates = cap;
	}
	r->rstates[r->nrstates++] = (struct raft_read_state){ctx, index};
}

static void answer(struct raft *r, const struct pending_read *pr)
{
	struct raft_msg m = {
	    .type = RAFT_MSG_READ_INDEX_RESP, .to = pr->from, .ctx = pr->ctx, .index = pr->index};

	if (pr->from == r->id)
		raft_read_push_state(r, pr->ctx, pr->index);
	else
		raft_send(r, &m);
}

static bool committed_in_term(const struct raft *r)
{
	uint64_t t;

	return raft_log_term(&r->log, r->commit, &t) == 0 && t == r->term;
}

static bool sole_voter(const struct raft *r)
{
	return raft_members_voters(&r->members) == 1 && raft_is_voter(r, r->id);
}

void raft_read_request(struct raft *r, uint64_t ctx, uint64_t from)
{
	struct pending_read pr = {.ctx = ctx, .from = from, .index = r->commit};

	if (committed_in_term(r) && sole_voter(r)) {
		answer(r, &pr);
		return;
	}
	if (r->nreads == r->cap_reads) {
		size_t cap = r->cap_reads ? r->cap_reads * 2 : 8;
		struct pending_read *n = realloc(r->reads, cap * sizeof(*n));

		RAFT_INVARIANT(r, n != NULL, "out of memory");
		r->reads = n;
		r->cap_reads = cap;
	}
	if (committed_in_term(r)) {
		pr.seq = ++r->read_seq;
		r->reads[r->nreads++] = pr;
		r->read_pending = true; /* one round for all reads until the next ready */
	} else {
		r->reads[r->nreads++] = pr; /* seq 0: wait for raft_read_on_commit */
	}
}

void raft_read_on_commit(struct raft *r)
{
	bool waiting = false;

	if (!committed_in_term(r))
		return;
	for (size_t i = 0; i < r->nreads; i++) {
		if (r->reads[i].seq == 0) {
			if (!waiting)
				++r->read_seq;
			waiting = true;
			r->reads[i].seq = r->read_seq;
			r->reads[i].index = r->commit;
		}
	}
	if (!waiting)
		return;
	if (sole_voter(r))
		raft_read_on_ack(r);
	else
		r->read_pending = true;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

void raft_read_on_ack(struct raft *r)
{
	uint64_t acks[RAFT_MAX_MEMBERS], confirmed;
	size_t n = 0, voters = raft_members_voters(&r->members), done = 0;

	if (r->role != RAFT_LEADER || !r->nreads || voters == 0)
		return;
	for (size_t i = 0; i < r->nprs; i++) {
		if (!r->prs[i].voter)
			continue;
		acks[n++] = r->prs[i].id == r->id ? r->read_seq : r->prs[i].read_ack;
	}
	if (n < voters / 2 + 1)
		return;
	qsort(acks, n, sizeof(acks[0]), cmp_desc);
	confirmed = acks[voters / 2];
	while (done < r->nreads && r->reads[done].seq && r->reads[done].seq <= confirmed)
		answer(r, &r->reads[done++]);
	memmove(r->reads, r->reads + done, (r->nreads - done) * sizeof(*r->reads));
	r->nreads -= done;
}

void raft_read_drop(struct raft *r)
{
	r->nreads = 0;
}
