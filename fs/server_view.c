/*
 * The view: what threads other than the loop may know of Raft and the
 * members. The loop copies the core's status and the address book into
 * srv->view and srv->book_view under mu after each ready
 * (server_view_refresh()); the functions here read that copy, and the store
 * under the read lock, from any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "server_impl.h"

_Static_assert(SERVER_MEMBERS_MAX == RAFT_MAX_MEMBERS, "server_members() can list them all");

void server_view_refresh(struct server *srv)
{
	struct raft_status st;

	raft_status_get(srv->raft, &st);
	pthread_mutex_lock(&srv->mu);
	srv->view.role = st.role;
	srv->view.term = st.term;
	srv->view.leader = st.leader;
	srv->view.commit = st.commit;
	srv->view.members = st.members;
	srv->view.learner = true;
	for (uint32_t i = 0; i < st.members.n; i++) {
		if (st.members.m[i].id == srv->member_id && st.members.m[i].voter)
			srv->view.learner = false;
	}
	srv->book_view = srv->book;
	pthread_mutex_unlock(&srv->mu);
}

/* The peer's slot (added if new and there is room), or NULL. Under mu. */
static struct view_peer *peer_slot(struct view *v, uint64_t id)
{
	for (size_t i = 0; i < v->npeers; i++) {
		if (v->peers[i].id == id)
			return &v->peers[i];
	}
	if (v->npeers == RAFT_MAX_MEMBERS) { /* reuse the slot of a link that is down */
		for (size_t i = 0; i < v->npeers; i++) {
			if (!v->peers[i].up) {
				v->peers[i] = (struct view_peer){.id = id};
				return &v->peers[i];
			}
		}
		return NULL;
	}
	v->peers[v->npeers] = (struct view_peer){.id = id};
	return &v->peers[v->npeers++];
}

void server_view_peer_state(struct server *srv, uint64_t peer, bool up)
{
	struct view_peer *p;

	pthread_mutex_lock(&srv->mu);
	if ((p = peer_slot(&srv->view, peer))) {
		p->up = up;
		p->probe_ns = 0;
	}
	pthread_mutex_unlock(&srv->mu);
}

void server_view_heartbeat_sent(struct server *srv, uint64_t peer)
{
	struct view_peer *p;

	pthread_mutex_lock(&srv->mu);
	if ((p = peer_slot(&srv->view, peer)) && !p->probe_ns)
		p->probe_ns = metrics_now_ns();
	pthread_mutex_unlock(&srv->mu);
}

void server_view_heartbeat_answered(struct server *srv, uint64_t peer)
{
	struct view_peer *p;
	uint64_t rtt = 0;

	pthread_mutex_lock(&srv->mu);
	if ((p = peer_slot(&srv->view, peer)) && p->probe_ns) {
		rtt = p->rtt_ns = metrics_now_ns() - p->probe_ns;
		p->probe_ns = 0;
	}
	pthread_mutex_unlock(&srv->mu);
	if (rtt)
		metrics_observe_ns(srv->metrics, M_PEER_RTT_SECONDS, rtt);
}

static const struct view_peer *peer_find(const struct view *v, uint64_t id)
{
	for (size_t i = 0; i < v->npeers; i++) {
		if (v->peers[i].id == id)
			return &v->peers[i];
	}
	return NULL;
}

static const char *role_name(const struct view *v)
{
	if (v->learner)
		return "learner";
	switch (v->role) {
	case RAFT_LEADER:
		return "leader";
	case RAFT_CANDIDATE:
	case RAFT_PRECANDIDATE:
		return "candidate";
	default:
		return "follower";
	}
}

void server_status(struct server *srv, struct server_status *st)
{
	const struct book_entry *leader;

	memset(st, 0, sizeof(*st));
	st->name = srv->cfg->name;
	st->member_id = srv->member_id;
	st->cluster_id = srv->cluster_id;
	st->quota_bytes = srv->cfg->quota_bytes;
	pthread_mutex_lock(&srv->mu);
	st->role = role_name(&srv->view);
	st->term = srv->view.term;
	st->commit_index = srv->view.commit;
	st->leader_id = srv->view.leader;
	leader = book_find(&srv->book_view, srv->view.leader);
	if (leader)
		snprintf(st->leader_name, sizeof(st->leader_name), "%s", leader->name);
	pthread_mutex_unlock(&srv->mu);
	server_rdlock(srv);
	st->applied_index = store_applied_index(srv->store);
	st->revision = store_revision(srv->store);
	st->compacted_revision = store_compacted_revision(srv->store);
	st->db_size = store_size(srv->store);
	st->keys = store_key_count(srv->store);
	st->snapshot_index = __atomic_load_n(&srv->snapshot_index, __ATOMIC_RELAXED);
	server_unlock(srv);
}

static void fill_member(struct server *srv, const struct raft_member *m, struct server_member *out)
{
	const struct view *v = &srv->view;
	const struct book_entry *e = book_find(&srv->book_view, m->id);
	const struct config *cfg = srv->cfg;
	const struct view_peer *p;

	memset(out, 0, sizeof(*out));
	out->id = m->id;
	out->voter = m->voter;
	out->leader = m->id == v->leader;
	if ((p = peer_find(v, m->id))) {
		out->connected = p->up;
		out->rtt_ns = p->rtt_ns;
	}
	if (e) {
		snprintf(out->name, sizeof(out->name), "%s", e->name);
		snprintf(out->peer_addr, sizeof(out->peer_addr), "%s", e->peer);
		snprintf(out->client_addr, sizeof(out->client_addr), "%s", e->client);
	} else if (m->id == srv->member_id) { /* a new member knows itself before the book does */
		snprintf(out->name, sizeof(out->name), "%s", cfg->name);
		snprintf(out->peer_addr, sizeof(out->peer_addr), "%s",
			 cfg->listen_peer ? cfg->listen_peer : "");
		snprintf(out->client_addr, sizeof(out->client_addr), "%s",
			 cfg->listen_client ? cfg->listen_client : "");
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct server_member *)a)->name,
		      ((const struct server_member *)b)->name);
}

size_t server_members(struct server *srv, struct server_member *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&srv->mu);
	for (uint32_t i = 0; i < srv->view.members.n && n < max; i++)
		fill_member(srv, &srv->view.members.m[i], &out[n++]);
	pthread_mutex_unlock(&srv->mu);
	qsort(out, n, sizeof(*out), by_name);
	return n;
}

bool server_reads_local(struct server *srv)
{
	bool local;

	pthread_mutex_lock(&srv->mu);
	local = srv->view.role == RAFT_LEADER && srv->view.members.n == 1;
	pthread_mutex_unlock(&srv->mu);
	return local;
}

int server_leader(struct server *srv, struct server_member *out)
{
	int rv = QFS_ENOENT;

	pthread_mutex_lock(&srv->mu);
	for (uint32_t i = 0; i < srv->view.members.n; i++) {
		if (srv->view.members.m[i].id == srv->view.leader && srv->view.leader) {
			fill_member(srv, &srv->view.members.m[i], out);
			rv = 0;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	return rv;
}
