/*
 * Per-follower flow control on the leader (§5.3 nextIndex/matchIndex, with
 * etcd-io/raft's three states): PROBE sends one APPEND at a time until the
 * follower's position is known, REPLICATE pipelines up to max_inflight
 * APPENDs optimistically, SNAPSHOT sends InstallSnapshot chunks and nothing
 * else until the follower has the snapshot.
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

int raft_progress_init(struct progress *p, uint64_t id, bool voter, uint64_t next,
		       size_t max_inflight)
{
	memset(p, 0, sizeof(*p));
	p->id = id;
	p->voter = voter;
	p->next = next;
	p->state = PR_PROBE;
	p->recent_active = true;
	p->in_cap = max_inflight ? max_inflight : 1;
	p->inflight = calloc(p->in_cap, sizeof(*p->inflight));
	return p->inflight ? 0 : QFS_ENOMEM;
}

void raft_progress_close(struct progress *p)
{
	free(p->inflight);
	p->inflight = NULL;
}

bool raft_progress_paused(const struct progress *p)
{
	switch (p->state) {
	case PR_PROBE:
		return p->probe_sent;
	case PR_REPLICATE:
		return p->in_count == p->in_cap;
	case PR_SNAPSHOT:
		return true;
	}
	return true;
}

bool raft_progress_update(struct progress *p, uint64_t index)
{
	bool moved = false;

	if (index > p->match) {
		p->match = index;
		p->probe_sent = false;
		moved = true;
	}
	if (p->next < index + 1)
		p->next = index + 1;
	return moved;
}

static void reset_state(struct progress *p, enum progress_state s)
{
	p->state = s;
	p->probe_sent = false;
	p->in_start = p->in_count = 0;
}

void raft_progress_become_probe(struct progress *p)
{
	/* Coming out of SNAPSHOT, resume after the snapshot. */
	if (p->state == PR_SNAPSHOT && p->next < p->snap_index + 1)
		p->next = (p->match > p->snap_index ? p->match : p->snap_index) + 1;
	else
		p->next = p->match + 1;
	reset_state(p, PR_PROBE);
}

void raft_progress_become_replicate(struct progress *p)
{
	reset_state(p, PR_REPLICATE);
	p->next = p->match + 1;
}

void raft_progress_become_snapshot(struct progress *p, uint64_t snap_index)
{
	reset_state(p, PR_SNAPSHOT);
	p->snap_index = snap_index;
	p->snap_offset = 0;
}

void raft_progress_sent(struct progress *p, uint64_t last_index, size_t nentries)
{
	if (p->state == PR_REPLICATE) {
		if (nentries) {
			p->next = last_index + 1;
			p->inflight[(p->in_start + p->in_count) % p->in_cap] = last_index;
			p->in_count++;
		}
	} else if (p->state == PR_PROBE) {
		p->probe_sent = true;
	}
}

void raft_progress_free_to(struct progress *p, uint64_t index)
{
	while (p->in_count && p->inflight[p->in_start] <= index) {
		p->in_start = (p->in_start + 1) % p->in_cap;
		p->in_count--;
	}
}
