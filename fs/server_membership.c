/*
 * Who is in the cluster and where to reach them: membership changes and
 * leadership transfers asked for on the leader, applying committed
 * configuration changes, the address book (member id -> name, peer and
 * client addresses) and the transport links it implies.
 *
 * The book is replicated: ADD_LEARNER changes carry a member's addresses,
 * and each member publishes its own (an ENTRY_MEMBER entry) when the book
 * does not have them. A removed member hears of its removal through a
 * FRAME_REMOVED notice, since the leader no longer replicates to it.
 * Loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "server_impl.h"

/* ---- Changes asked for on the leader ------------------------------------- */

void server_member_change(struct server *srv, enum server_member_op op,
			  const struct server_member *m, server_member_cb cb, void *arg)
{
	const struct book_entry *b = book_find_name(&srv->book, m->name);
	uint64_t id = b ? b->id : server_name_id(m->name);
	struct member_op *mo;
	char ctx[RAFT_CONF_CONTEXT_MAX];
	int n, rv;

	if (srv->view.role != RAFT_LEADER) {
		cb(arg, QFS_ENOTLEADER);
		return;
	}
	if (op == SERVER_MEMBER_ADD_LEARNER) {
		if (b) {
			cb(arg, QFS_EEXIST);
			return;
		}
		n = snprintf(ctx, sizeof(ctx), "%s%c%s%c%s", m->name, 0, m->peer_addr, 0,
			     m->client_addr);
		if (n < 0 || (size_t)n >= sizeof(ctx) || !m->peer_addr[0]) {
			cb(arg, QFS_EINVAL);
			return;
		}
		rv = raft_propose_conf(srv->raft, RAFT_CONF_ADD_LEARNER, id, (uint8_t *)ctx,
				       (size_t)n + 1);
	} else if (!b) {
		cb(arg, QFS_ENOENT);
		return;
	} else if (op == SERVER_LEADER_TRANSFER) {
		rv = raft_transfer(srv->raft, id);
	} else {
		rv = raft_propose_conf(
		    srv->raft, op == SERVER_MEMBER_PROMOTE ? RAFT_CONF_PROMOTE : RAFT_CONF_REMOVE,
		    id, NULL, 0);
	}
	if (rv || !(mo = calloc(1, sizeof(*mo)))) {
		cb(arg, rv ? rv : QFS_ENOMEM);
		return;
	}
	*mo = (struct member_op){
	    op, id, cb, arg, server_now_ms(srv) + srv->cfg->request_timeout_ms, srv->member_ops};
	srv->member_ops = mo;
	server_ready_process(srv);
}

static void complete_member_ops(struct server *srv, enum server_member_op op, uint64_t id, int err)
{
	for (struct member_op **pp = &srv->member_ops; *pp;) {
		struct member_op *m = *pp;

		if (m->op == op && m->id == id) {
			*pp = m->next;
			m->cb(m->arg, err);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

void server_member_ops_expire(struct server *srv)
{
	uint64_t now = server_now_ms(srv);

	for (struct member_op **pp = &srv->member_ops; *pp;) {
		struct member_op *m = *pp;

		if (m->op == SERVER_LEADER_TRANSFER && srv->view.leader == m->id) {
			*pp = m->next;
			m->cb(m->arg, 0);
			free(m);
		} else if (now >= m->deadline) {
			*pp = m->next;
			m->cb(m->arg, QFS_ETIMEDOUT);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

void server_member_ops_fail(struct server *srv, int err)
{
	while (srv->member_ops) {
		struct member_op *m = srv->member_ops;

		srv->member_ops = m->next;
		m->cb(m->arg, err);
		free(m);
	}
}

/* ---- Applying a committed change ----------------------------------------- */

void server_conf_apply(struct server *srv, const struct raft_entry *e)
{
	static const enum server_member_op ops[] = {
	    [RAFT_CONF_ADD_LEARNER] = SERVER_MEMBER_ADD_LEARNER,
	    [RAFT_CONF_PROMOTE] = SERVER_MEMBER_PROMOTE,
	    [RAFT_CONF_REMOVE] = SERVER_MEMBER_REMOVE,
	};
	struct raft_conf_change c;
	bool present = false;

	if (raft_conf_decode(e->data, e->len, &c) != 0) {
		LOG_ERROR("entry %llu: malformed membership change", (unsigned long long)e->index);
		return;
	}
	if (c.op == RAFT_CONF_ADD_LEARNER && c.context_len) {
		/* context: name NUL peer NUL client (NUL) */
		char ctx[RAFT_CONF_CONTEXT_MAX + 3] = {0};
		const char *name = ctx, *peer, *client;

		memcpy(ctx, c.context, c.context_len);
		peer = name + strlen(name) + 1;
		client = peer + strlen(peer) + 1;
		book_set(&srv->book, c.id, name, peer, client);
	}
	if (c.op == RAFT_CONF_REMOVE)
		book_remove(&srv->book, c.id);
	for (uint32_t i = 0; i < c.members.n; i++)
		present |= c.members.m[i].id == srv->member_id;
	if (c.op)
		LOG_INFO("membership change committed at %llu: %s member %llx",
			 (unsigned long long)e->index,
			 c.op == RAFT_CONF_ADD_LEARNER ? "added learner"
			 : c.op == RAFT_CONF_PROMOTE   ? "promoted"
						       : "removed",
			 (unsigned long long)c.id);
	if (c.op == RAFT_CONF_REMOVE && srv->transport && c.id != srv->member_id &&
	    srv->nremovals < BOOK_MAX) {
		/* The leader stops replicating to a removed member, so it would
		 * never see its own removal: tell it, then drop the link. */
		transport_send(srv->transport, c.id, FRAME_REMOVED, "", 0);
		srv->removals[srv->nremovals].id = c.id;
		srv->removals[srv->nremovals++].at = server_now_ms(srv) + 2 * srv->cfg->election_ms;
	}
	server_peers_sync(srv);
	if (c.op)
		complete_member_ops(srv, ops[c.op], c.id, 0);
	if (!present && c.op == RAFT_CONF_REMOVE && c.id == srv->member_id) {
		LOG_WARN("this member was removed from the cluster; stopping");
		server_shutdown(srv);
	}
}

/* A member's addresses, published by the member itself. */
void server_member_entry_apply(struct server *srv, const struct raft_entry *e)
{
	struct entry *m;

	if (entry_decode(e->data, e->len, &m) == 0) {
		book_set(&srv->book, m->member.id, m->member.name, m->member.peer,
			 m->member.client);
		free(m);
		server_peers_sync(srv);
	}
}

/* ---- Links to peers ------------------------------------------------------ */

/* Removals take members out of the book, so they are not connected again. */
void server_peers_sync(struct server *srv)
{
	if (!srv->transport)
		return;
	for (size_t i = 0; i < srv->book.n; i++) {
		const struct book_entry *b = &srv->book.e[i];

		if (b->id != srv->member_id && b->peer[0])
			transport_peer_add(srv->transport, b->id, b->peer); /* EEXIST: known */
	}
}

void server_removed_links_drop(struct server *srv)
{
	for (size_t i = 0; i < srv->nremovals;) {
		if (server_now_ms(srv) < srv->removals[i].at) {
			i++;
			continue;
		}
		transport_peer_remove(srv->transport, srv->removals[i].id);
		srv->removals[i] = srv->removals[--srv->nremovals];
	}
}

/* ---- Publishing this member's addresses ---------------------------------- */

/* Once per start, when the book does not say so already. */
static void publish_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	(void)res;
	srv->publishing = false;
	if (err)
		LOG_DEBUG("publishing member addresses: %s (will retry)", qfs_strerror(err));
}

void server_addresses_publish(struct server *srv)
{
	const struct book_entry *b = book_find(&srv->book, srv->member_id);
	const char *peer = srv->cfg->listen_peer ? srv->cfg->listen_peer : "";
	const char *client = srv->cfg->listen_client ? srv->cfg->listen_client : "";
	struct entry e = {.type = ENTRY_MEMBER};

	if (srv->publishing || srv->stopped || !srv->view.leader ||
	    (b && strcmp(b->name, srv->cfg->name) == 0 && strcmp(b->peer, peer) == 0 &&
	     strcmp(b->client, client) == 0))
		return;
	e.member = (struct entry_member){srv->member_id, srv->cfg->name, peer, client};
	if (server_propose(srv, &e, publish_done, srv) == 0)
		srv->publishing = true;
}
