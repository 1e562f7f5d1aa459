/*
 * The lease keeper, and the rules for the leases this daemon hands out.
 *
 * Only the leader expires leases, and only after it confirmed with a read
 * point that it still leads, so a deposed or partitioned leader revokes
 * nothing. A new leader first waits one election timeout: the old leader's
 * view of time is not known, and waiting can only lengthen a lease, by at
 * most that much. The entry names each lease's generation: a renewal that
 * raced the expiry wins (store.h). The keeper runs every tick on the loop
 * thread; server_lease_id_new() and server_lease_min_ttl_ms() are for any
 * thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "server_impl.h"

/* ---- Expiry -------------------------------------------------------------- */

struct expiry_round {
	struct server *srv;
	struct store_op *ops;
	size_t n, cap;
	int64_t now_ns;
};

static int collect_expired(void *arg, const struct store_lease *l)
{
	struct expiry_round *x = arg;

	if (l->expiry_ns > x->now_ns || x->n == 256) /* a bounded round; more next tick */
		return 0;
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		struct store_op *grown = realloc(x->ops, cap * sizeof(*grown));

		if (!grown)
			return 1;
		x->ops = grown;
		x->cap = cap;
	}
	x->ops[x->n++] = (struct store_op){
	    .type = STORE_OP_LEASE_EXPIRE, .lease_id = l->id, .lease_gen = l->gen};
	return 0;
}

static void expiry_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	if (err || res->err)
		LOG_WARN("lease expiry: %s", qfs_strerror(err ? err : res->err));
	else
		metrics_add(srv->metrics, M_LEASES_EXPIRED, srv->expiring);
	srv->expiring = 0;
}

static void expiry_confirmed(void *arg, int err)
{
	struct expiry_round *x = arg;
	struct server *srv = x->srv;
	struct entry e = {.type = ENTRY_TXN};

	if (!err && srv->view.role == RAFT_LEADER) {
		e.txn.then_ops = x->ops;
		e.txn.nthen = x->n;
		srv->expiring = x->n;
		err = server_propose(srv, &e, expiry_done, srv);
	} else if (!err) {
		err = QFS_ENOTLEADER;
	}
	if (err) {
		LOG_DEBUG("lease expiry round dropped: %s", qfs_strerror(err));
		srv->expiring = 0;
	}
	free(x->ops);
	free(x);
}

void server_leases_expire(struct server *srv)
{
	struct expiry_round *x;
	struct timespec ts;

	if (srv->expiring || srv->stopped || srv->view.role != RAFT_LEADER || !srv->leader_since ||
	    server_now_ms(srv) < srv->leader_since + srv->cfg->election_ms ||
	    !(x = calloc(1, sizeof(*x))))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	x->srv = srv;
	x->now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	store_lease_list(srv->store, collect_expired, x);
	if (x->n == 0 || server_read_barrier(srv, expiry_confirmed, x) != 0) {
		free(x->ops);
		free(x);
		return;
	}
	srv->expiring = SIZE_MAX; /* until the round's leases are known */
}

/* ---- Lease ids and ttls -------------------------------------------------- */

uint64_t server_lease_id_new(void)
{
	uint64_t id = 0;

	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
		id &= SERVER_LEASE_ID_MASK;
	}
	return id;
}

int64_t server_lease_min_ttl_ms(const struct server *srv)
{
	return (int64_t)srv->cfg->election_ms * 3 / 2;
}
