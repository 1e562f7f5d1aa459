/*
 * Safety checks, run as the simulation goes (after every step's readies):
 *
 *  - Election Safety: at most one leader per term (every ready's role).
 *  - Log Matching: every entry a member hands out to persist is recorded by
 *    (index, term) with a hash of its bytes and the term of the entry before
 *    it; a second (index, term) with other bytes or another predecessor
 *    term fails. By induction over indexes that is the Log Matching
 *    Property (§5.3).
 *  - Committed entries are never lost or changed: each member's commit
 *    index is checked against the first term ever seen committed at each
 *    index, and an entry a member writes at or below its own commit index
 *    must be the committed one.
 *  - Leader Completeness (§5.4): a member that becomes leader holds every
 *    entry known to be committed (beyond its own snapshot).
 *  - State Machine Safety: every member applies the same entry at each
 *    index, and the store's state hash after applying index i (or after
 *    loading a snapshot at i) is the same everywhere.
 */
#include <stdlib.h>
#include <string.h>

#include "../../common/codec.h"
#include "sim.h"

struct rec {
	uint64_t term, hash, prev_term;
};

struct slot {
	uint64_t committed_term; /* 0 = unknown */
	uint64_t apply_hash;	 /* 0 = unknown */
	uint64_t state_hash;	 /* 0 = unknown */
	struct rec *recs;
	size_t nrecs;
};

struct sim_check {
	uint64_t *leaders; /* by term */
	size_t nleaders;
	struct slot *slots; /* by index */
	size_t nslots;
	uint64_t max_committed;
};

struct sim_check *sim_check_create(void)
{
	return calloc(1, sizeof(struct sim_check));
}

void sim_check_destroy(struct sim_check *c)
{
	for (size_t i = 0; i < c->nslots; i++)
		free(c->slots[i].recs);
	free(c->slots);
	free(c->leaders);
	free(c);
}

static struct slot *slot(struct sim_check *c, uint64_t index)
{
	if (index >= c->nslots) {
		size_t n = c->nslots ? c->nslots : 256;

		while (n <= index)
			n *= 2;
		c->slots = realloc(c->slots, n * sizeof(*c->slots));
		memset(c->slots + c->nslots, 0, (n - c->nslots) * sizeof(*c->slots));
		c->nslots = n;
	}
	return &c->slots[index];
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t t = (uint8_t)e->type;

	h = fnv(h, &e->term, sizeof(e->term));
	h = fnv(h, &t, 1);
	h = fnv(h, e->data, e->len);
	return h | 1;
}

uint32_t sim_state_hash(struct sim_node *n)
{
	uint32_t h = 0;
	struct qbuf b;
	uint64_t x;

	store_hash(n->st, 0, &h);
	qbuf_init(&b);
	raft_dedup_encode(&n->dd, &b);
	x = fnv(0xcbf29ce484222325ull, b.data, b.len);
	x = fnv(x, &h, sizeof(h));
	h = (uint32_t)(x ^ store_revision(n->st) ^ (x >> 32));
	qbuf_close(&b);
	return h;
}

void sim_check_entries(struct sim *s, struct sim_node *n, const struct raft_entry *e, size_t k)
{
	struct sim_check *c = s->chk;
	struct raft_status st;

	raft_status_get(n->r, &st);
	for (size_t i = 0; i < k; i++) {
		struct slot *sl = slot(c, e[i].index);
		uint64_t h = entry_hash(&e[i]), prev = 0;
		bool found = false;

		raft_term_at(n->r, e[i].index - 1, &prev);
		/* A stale leader may write at an index committed elsewhere; a member
		 * must never write over what it knows to be committed. */
		if (e[i].index <= st.commit && sl->committed_term &&
		    sl->committed_term != e[i].term)
			sim_fail(s, "n%llu writes entry %llu term %llu over committed term %llu",
				 (unsigned long long)n->id, (unsigned long long)e[i].index,
				 (unsigned long long)e[i].term,
				 (unsigned long long)sl->committed_term);
		for (size_t j = 0; j < sl->nrecs; j++) {
			if (sl->recs[j].term != e[i].term)
				continue;
			found = true;
			if (sl->recs[j].hash != h || sl->recs[j].prev_term != prev)
				sim_fail(s,
					 "log matching: n%llu entry %llu term %llu differs "
					 "(prev term %llu vs %llu)",
					 (unsigned long long)n->id, (unsigned long long)e[i].index,
					 (unsigned long long)e[i].term, (unsigned long long)prev,
					 (unsigned long long)sl->recs[j].prev_term);
		}
		if (!found) {
			sl->recs = realloc(sl->recs, (sl->nrecs + 1) * sizeof(*sl->recs));
			sl->recs[sl->nrecs++] = (struct rec){e[i].term, h, prev};
		}
	}
}

void sim_check_role(struct sim *s, struct sim_node *n, enum raft_role role, uint64_t term)
{
	struct sim_check *c = s->chk;
	struct raft_status st;

	if (role != RAFT_LEADER)
		return;
	if (term >= c->nleaders) {
		size_t m = c->nleaders ? c->nleaders : 64;

		while (m <= term)
			m *= 2;
		c->leaders = realloc(c->leaders, m * sizeof(*c->leaders));
		memset(c->leaders + c->nleaders, 0, (m - c->nleaders) * sizeof(*c->leaders));
		c->nleaders = m;
	}
	if (c->leaders[term] && c->leaders[term] != n->id)
		sim_fail(s, "two leaders in term %llu: n%llu and n%llu", (unsigned long long)term,
			 (unsigned long long)c->leaders[term], (unsigned long long)n->id);
	if (c->leaders[term] == n->id)
		return;
	c->leaders[term] = n->id;
	raft_status_get(n->r, &st);
	for (uint64_t i = st.snapshot_index + 1; i <= c->max_committed; i++) {
		uint64_t t = 0, want = slot(c, i)->committed_term;

		if (!want)
			continue;
		if (raft_term_at(n->r, i, &t) || t != want)
			sim_fail(s,
				 "leader completeness: n%llu leads term %llu without committed "
				 "entry %llu (term %llu, has %llu)",
				 (unsigned long long)n->id, (unsigned long long)term,
				 (unsigned long long)i, (unsigned long long)want,
				 (unsigned long long)t);
	}
}

void sim_check_commit(struct sim *s, struct sim_node *n)
{
	struct sim_check *c = s->chk;
	struct raft_status st;

	if (!n->up)
		return;
	raft_status_get(n->r, &st);
	if (st.commit < n->checked_commit)
		sim_fail(s, "n%llu commit went back", (unsigned long long)n->id);
	for (uint64_t i = n->checked_commit + 1; i <= st.commit; i++) {
		struct slot *sl;
		uint64_t t;

		if (i <= st.snapshot_index)
			continue;
		sl = slot(c, i);
		if (raft_term_at(n->r, i, &t))
			sim_fail(s, "n%llu committed %llu is missing", (unsigned long long)n->id,
				 (unsigned long long)i);
		if (sl->committed_term && sl->committed_term != t)
			sim_fail(s,
				 "n%llu committed entry %llu has term %llu, committed before "
				 "with term %llu",
				 (unsigned long long)n->id, (unsigned long long)i,
				 (unsigned long long)t, (unsigned long long)sl->committed_term);
		sl->committed_term = t;
	}
	n->checked_commit = st.commit;
	if (st.commit > c->max_committed)
		c->max_committed = st.commit;
}

void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
	struct slot *sl = slot(s->chk, e->index);
	uint64_t h = entry_hash(e), sh = sim_state_hash(n) | (1ull << 40);

	if (sl->committed_term && sl->committed_term != e->term)
		sim_fail(s, "n%llu applies entry %llu of term %llu, committed term %llu",
			 (unsigned long long)n->id, (unsigned long long)e->index,
			 (unsigned long long)e->term, (unsigned long long)sl->committed_term);
	if (sl->apply_hash && sl->apply_hash != h)
		sim_fail(s, "n%llu applies a different entry at %llu", (unsigned long long)n->id,
			 (unsigned long long)e->index);
	sl->apply_hash = h;
	if (sl->state_hash && sl->state_hash != sh)
		sim_fail(s, "n%llu state after applying %llu differs from another member's",
			 (unsigned long long)n->id, (unsigned long long)e->index);
	sl->state_hash = sh;
}

void sim_check_snapshot_loaded(struct sim *s, struct sim_node *n, uint64_t index)
{
	struct slot *sl = slot(s->chk, index);
	uint64_t sh = sim_state_hash(n) | (1ull << 40);

	if (sl->state_hash && sl->state_hash != sh)
		sim_fail(s, "n%llu state from snapshot %llu differs from applying the log",
			 (unsigned long long)n->id, (unsigned long long)index);
	sl->state_hash = sh;
}
