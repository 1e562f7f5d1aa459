/*
 * Simulated clients and the linearizability check of what they saw.
 *
 * SIM_NCLIENTS sequential clients each run one operation at a time on
 * SIM_NKEYS keys: a write puts a value unique in the whole run (an
 * entry_encode()d TXN with origin SIM_ORIGIN_BASE + client and a fresh
 * request id), proposed at a random member and retried with the SAME
 * request id at another member after a timeout (the applier's raft_dedup
 * must apply it once); a read asks a random member for a ReadIndex and
 * reads that member's store once it has applied up to the index.
 *
 * A write completes when a member applies it; a read when it returns. Reads
 * that never return are dropped (no effect); writes that never complete
 * stay in the history with an infinite response time.
 *
 * The check (sim_clients_check), per key. Values are unique, so each read
 * names the write it saw. Writes take effect in log order (the order the
 * state machines applied them, already checked equal on every member), so
 * a linearization must order writes by their log position p(w). With that
 * order fixed, the history is linearizable iff:
 *   1. every completed write was applied, exactly once (dedup);
 *   2. real time respects the log: resp(a) < inv(b) implies p(a) < p(b);
 *   3. a read returns an applied write's value (or "absent" = position 0)
 *      that was invoked before the read returned;
 *   4. no stale read: no write with a later position completed before the
 *      read was invoked;
 *   5. reads do not go back: resp(r1) < inv(r2) implies p(r1) <= p(r2).
 * (Writes on one key in log order form a chain; 2-5 are exactly the
 * interval constraints a unique-valued register's linearization must meet,
 * and they are enough to build one greedily.)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../store/entry.h"
#include "sim.h"

#define OP_TIMEOUT 250
#define MAX_TRIES 6

struct op {
	int client;
	bool read;
	bool dropped;
	int key;
	uint64_t value; /* write: value id; read: value id seen (0 = absent) */
	uint64_t inv, resp;
	uint64_t index; /* write: log index where applied (0 = never) */
	uint64_t reqid;
};

enum cstate { C_IDLE, C_WRITE, C_READ };

struct client {
	enum cstate state;
	size_t op;
	uint64_t node;
	uint64_t deadline;
	unsigned tries;
	uint64_t reqid;
	struct qbuf entry;
	uint64_t ctx;
	uint64_t read_index; /* 0 = not yet known */
	size_t *wops;	     /* op index by request id */
	size_t nwops;
};

struct sim_clients {
	struct client c[SIM_NCLIENTS];
	struct op *ops;
	size_t nops, cap;
	uint64_t next_value, next_ctx;
};

static const char *const keys[SIM_NKEYS] = {"/a", "/b"};

struct sim_clients *sim_clients_create(void)
{
	struct sim_clients *c = calloc(1, sizeof(*c));

	for (int i = 0; i < SIM_NCLIENTS; i++)
		qbuf_init(&c->c[i].entry);
	return c;
}

void sim_clients_destroy(struct sim_clients *c)
{
	for (int i = 0; i < SIM_NCLIENTS; i++) {
		qbuf_close(&c->c[i].entry);
		free(c->c[i].wops);
	}
	free(c->ops);
	free(c);
}

static struct op *new_op(struct sim_clients *c)
{
	if (c->nops == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->ops = realloc(c->ops, c->cap * sizeof(*c->ops));
	}
	memset(&c->ops[c->nops], 0, sizeof(c->ops[0]));
	return &c->ops[c->nops++];
}

static uint64_t pick_node(struct sim *s, uint64_t avoid)
{
	uint64_t ids[SIM_MAX_NODES], k = 0;

	for (uint64_t i = 1; i <= SIM_MAX_NODES; i++)
		if (s->nodes[i].up && i != avoid)
			ids[k++] = i;
	return k ? ids[sim_below(s, k)] : 0;
}

static void try_write(struct sim *s, struct client *cl, int ci)
{
	struct sim_node *n;
	int rc;

	cl->node = pick_node(s, cl->node);
	n = sim_node(s, cl->node);
	cl->tries++;
	cl->deadline = s->now + (n ? OP_TIMEOUT : 10);
	if (!n)
		return;
	rc = raft_propose(n->r, cl->entry.data, cl->entry.len);
	sim_trace(s, "c%d put %s=v%" PRIu64 " req %" PRIu64 " at n%" PRIu64 ": %s", ci,
		  keys[s->cl->ops[cl->op].key], s->cl->ops[cl->op].value, cl->reqid, cl->node,
		  qfs_strerror(rc));
	if (rc)
		cl->deadline = s->now + 10;
}

static void start_write(struct sim *s, int ci)
{
	struct sim_clients *c = s->cl;
	struct client *cl = &c->c[ci];
	struct op *o = new_op(c);
	char val[32];
	struct store_op put = {.type = STORE_OP_PUT, .ftype = STORE_FILE, .mode = 0644};
	struct entry e = {.type = ENTRY_TXN, .origin = SIM_ORIGIN_BASE + (uint64_t)ci};

	o->client = ci;
	o->key = (int)sim_below(s, SIM_NKEYS);
	o->value = ++c->next_value;
	o->inv = s->now;
	o->resp = SIM_INF;
	o->reqid = ++cl->reqid;
	snprintf(val, sizeof(val), "v%" PRIu64, o->value);
	put.key = keys[o->key];
	put.value = (const uint8_t *)val;
	put.value_len = strlen(val);
	e.request_id = o->reqid;
	e.txn.then_ops = &put;
	e.txn.nthen = 1;
	qbuf_close(&cl->entry);
	qbuf_init(&cl->entry);
	if (entry_encode(&e, &cl->entry))
		sim_fail(s, "entry_encode");
	cl->wops = realloc(cl->wops, (o->reqid + 1) * sizeof(*cl->wops));
	cl->wops[o->reqid] = c->nops - 1;
	cl->nwops = o->reqid + 1;
	cl->state = C_WRITE;
	cl->op = c->nops - 1;
	cl->tries = 0;
	cl->node = 0;
	try_write(s, cl, ci);
}

static void start_read(struct sim *s, int ci)
{
	struct sim_clients *c = s->cl;
	struct client *cl = &c->c[ci];
	struct sim_node *n;
	struct op *o;
	int rc;

	cl->node = pick_node(s, 0);
	n = sim_node(s, cl->node);
	if (!n)
		return;
	o = new_op(c);
	o->client = ci;
	o->read = true;
	o->key = (int)sim_below(s, SIM_NKEYS);
	o->inv = s->now;
	o->resp = SIM_INF;
	cl->ctx = ++c->next_ctx;
	cl->read_index = 0;
	cl->op = c->nops - 1;
	rc = raft_read_index(n->r, cl->ctx);
	sim_trace(s, "c%d read %s at n%" PRIu64 " ctx %" PRIu64 ": %s", ci, keys[o->key], cl->node,
		  cl->ctx, qfs_strerror(rc));
	if (rc) {
		o->dropped = true;
		return;
	}
	cl->state = C_READ;
	cl->deadline = s->now + OP_TIMEOUT;
}

void sim_clients_step(struct sim *s)
{
	struct sim_clients *c = s->cl;

	for (int i = 0; i < SIM_NCLIENTS; i++) {
		struct client *cl = &c->c[i];

		switch (cl->state) {
		case C_IDLE:
			if (s->quiet || sim_below(s, 100) >= s->p.client_pct)
				break;
			if (sim_below(s, 2))
				start_write(s, i);
			else
				start_read(s, i);
			break;
		case C_WRITE:
			if (s->now < cl->deadline)
				break;
			if (cl->tries >= MAX_TRIES) {
				sim_trace(s, "c%d gives up on req %" PRIu64, i, cl->reqid);
				cl->state = C_IDLE;
			} else {
				try_write(s, cl, i);
			}
			break;
		case C_READ:
			if (s->now >= cl->deadline) {
				c->ops[cl->op].dropped = true;
				cl->state = C_IDLE;
			}
			break;
		}
	}
}

void sim_clients_on_apply(struct sim *s, struct sim_node *n, uint64_t origin, uint64_t reqid,
			  bool dup, uint64_t index)
{
	struct sim_clients *c = s->cl;
	struct client *cl;
	struct op *o;

	(void)n;
	if (origin < SIM_ORIGIN_BASE || origin >= SIM_ORIGIN_BASE + SIM_NCLIENTS)
		sim_fail(s, "applied entry with unknown origin %" PRIu64, origin);
	cl = &c->c[origin - SIM_ORIGIN_BASE];
	if (reqid >= cl->nwops)
		sim_fail(s, "applied unknown request %" PRIu64, reqid);
	o = &c->ops[cl->wops[reqid]];
	if (!dup) {
		if (o->index && o->index != index)
			sim_fail(s,
				 "request %" PRIu64 "/%" PRIu64 " applied at %" PRIu64
				 " and again at %" PRIu64,
				 origin, reqid, o->index, index);
		o->index = index;
	}
	if (cl->state == C_WRITE && cl->reqid == reqid) {
		o->resp = s->now;
		cl->state = C_IDLE;
		sim_trace(s, "c%d put done at index %" PRIu64, (int)(origin - SIM_ORIGIN_BASE),
			  o->index);
	}
}

static void finish_read(struct sim *s, struct client *cl, struct sim_node *n)
{
	struct op *o = &s->cl->ops[cl->op];
	struct store_kv kv;
	int rc = store_get(n->st, keys[o->key], 0, &kv);

	if (rc == 0) {
		char buf[32];

		if (kv.value->len < 2 || kv.value->len >= sizeof(buf) || kv.value->data[0] != 'v')
			sim_fail(s, "read a value we never wrote");
		memcpy(buf, kv.value->data, kv.value->len);
		buf[kv.value->len] = 0;
		o->value = strtoull(buf + 1, NULL, 10);
	} else if (rc != QFS_ENOENT) {
		sim_fail(s, "store_get: %s", qfs_strerror(rc));
	}
	o->resp = s->now;
	cl->state = C_IDLE;
	sim_trace(s, "c%d read %s = v%" PRIu64 " at n%" PRIu64 " index %" PRIu64, o->client,
		  keys[o->key], o->value, n->id, cl->read_index);
}

void sim_clients_on_read_state(struct sim *s, struct sim_node *n, uint64_t ctx, uint64_t index)
{
	for (int i = 0; i < SIM_NCLIENTS; i++) {
		struct client *cl = &s->cl->c[i];

		if (cl->state != C_READ || cl->ctx != ctx || cl->node != n->id)
			continue;
		cl->read_index = index;
		if (store_applied_index(n->st) >= index)
			finish_read(s, cl, n);
	}
}

void sim_clients_on_node_applied(struct sim *s, struct sim_node *n)
{
	for (int i = 0; i < SIM_NCLIENTS; i++) {
		struct client *cl = &s->cl->c[i];

		if (cl->state == C_READ && cl->node == n->id && cl->read_index &&
		    store_applied_index(n->st) >= cl->read_index)
			finish_read(s, cl, n);
	}
}

void sim_clients_on_crash(struct sim *s, struct sim_node *n)
{
	for (int i = 0; i < SIM_NCLIENTS; i++) {
		struct client *cl = &s->cl->c[i];

		if (cl->state == C_READ && cl->node == n->id) {
			s->cl->ops[cl->op].dropped = true;
			cl->state = C_IDLE;
		}
	}
}

bool sim_clients_idle(struct sim *s)
{
	for (int i = 0; i < SIM_NCLIENTS; i++)
		if (s->cl->c[i].state != C_IDLE)
			return false;
	return true;
}

uint64_t sim_clients_ops(struct sim *s, uint64_t *reads)
{
	*reads = 0;
	for (size_t i = 0; i < s->cl->nops; i++)
		*reads += s->cl->ops[i].read && !s->cl->ops[i].dropped;
	return s->cl->nops;
}

void sim_clients_check(struct sim *s)
{
	struct sim_clients *c = s->cl;
	size_t *by_value = calloc(c->next_value + 1, sizeof(*by_value));
	uint64_t *pos = calloc(c->nops + 1, sizeof(*pos));

	/* Log position of what each read saw; by_value maps value -> op + 1. */
	for (size_t i = 0; i < c->nops; i++)
		if (!c->ops[i].read)
			by_value[c->ops[i].value] = i + 1;
	for (size_t i = 0; i < c->nops; i++) {
		const struct op *a = &c->ops[i], *w;

		if (!a->read || a->dropped || a->resp == SIM_INF || a->value == 0)
			continue;
		if (a->value > c->next_value || !by_value[a->value])
			sim_fail(s, "read returned v%" PRIu64 ", which nobody wrote", a->value);
		w = &c->ops[by_value[a->value] - 1];
		if (!w->index)
			sim_fail(s, "read of %s returned v%" PRIu64 ", never applied", keys[a->key],
				 a->value);
		if (w->inv > a->resp || w->key != a->key)
			sim_fail(s,
				 "c%d read of %s returned v%" PRIu64 " at [%" PRIu64 ",%" PRIu64
				 "] but it is a write of %s at %" PRIu64,
				 a->client, keys[a->key], a->value, a->inv, a->resp, keys[w->key],
				 w->inv);
		pos[i] = w->index;
	}
	for (size_t i = 0; i < c->nops; i++) {
		const struct op *a = &c->ops[i];

		if (a->read && (a->dropped || a->resp == SIM_INF))
			continue;
		if (!a->read) {
			if (a->resp != SIM_INF && !a->index)
				sim_fail(s, "acknowledged write v%" PRIu64 " was never applied",
					 a->value);
			for (size_t j = 0; j < c->nops; j++) {
				const struct op *b = &c->ops[j];

				if (!b->read && b->key == a->key && a->index && b->index &&
				    a->resp < b->inv && a->index > b->index)
					sim_fail(s,
						 "write v%" PRIu64 " completed before v%" PRIu64
						 " started but is later in the log",
						 a->value, b->value);
			}
			continue;
		}
		for (size_t j = 0; j < c->nops; j++) {
			const struct op *b = &c->ops[j];

			if (b->key != a->key || b->resp == SIM_INF || b->dropped)
				continue;
			if (!b->read) {
				if (b->index > pos[i] && b->resp < a->inv)
					sim_fail(s,
						 "stale read: c%d read %s = v%" PRIu64
						 " at [%" PRIu64 ",%" PRIu64 "] but v%" PRIu64
						 " (later in the log) "
						 "completed at %" PRIu64,
						 a->client, keys[a->key], a->value, a->inv, a->resp,
						 b->value, b->resp);
				continue;
			}
			if (b->resp < a->inv && pos[j] > pos[i])
				sim_fail(
				    s,
				    "reads went back: v%" PRIu64 " read at [%" PRIu64 ",%" PRIu64
				    "] after v%" PRIu64 " read at [%" PRIu64 ",%" PRIu64 "]",
				    a->value, a->inv, a->resp, c->ops[j].value, b->inv, b->resp);
		}
	}
	free(by_value);
	free(pos);
}
