/*
 * Unit tests of the Raft core: specific scenarios on a small in-test
 * cluster where persistence completes at once and messages travel through
 * the wire codec, with filters to cut links or hold messages back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../raft/dedup.h"
#include "../../raft/raft.h"

#define MAXN 6

struct tnode {
	struct raft *r;
	uint64_t applied;   /* last index applied */
	char last_data[64]; /* data of the last NORMAL entry applied */
	size_t napplied_normal;
	struct raft_read_state reads[16];
	size_t nreads;
	uint8_t snap[64]; /* last snapshot received */
	size_t snap_len;
	uint64_t snap_index;
	bool held_resp; /* saw entries to persist without their ack */
};

struct tnet {
	struct tnode n[MAXN + 1];
	bool cut[MAXN + 1][MAXN + 1];
	/* Drops a message when it returns true. */
	bool (*filter)(const struct raft_msg *m);
	struct qbuf q[256];
	size_t nq;
};

static void opts(struct raft_options *o, uint64_t id)
{
	raft_options_default(o, id);
	o->rand_seed = id * 7919;
}

static void add_node(struct tnet *t, uint64_t id, const struct raft_options *o,
		     const struct raft_restore *rs)
{
	struct raft_options d;

	if (!o) {
		opts(&d, id);
		o = &d;
	}
	assert_int_equal(raft_create(o, rs, &t->n[id].r), 0);
}

static struct tnet *cluster(int n)
{
	struct tnet *t = calloc(1, sizeof(*t));
	struct raft_members m = {0};

	for (int i = 1; i <= n; i++)
		m.m[m.n++] = (struct raft_member){.id = (uint64_t)i, .voter = true};
	for (int i = 1; i <= n; i++) {
		add_node(t, (uint64_t)i, NULL, NULL);
		assert_int_equal(raft_bootstrap(t->n[i].r, &m), 0);
	}
	return t;
}

static void net_free(struct tnet *t)
{
	for (int i = 1; i <= MAXN; i++)
		raft_destroy(t->n[i].r);
	for (size_t i = 0; i < t->nq; i++)
		qbuf_close(&t->q[i]);
	free(t);
}

static void handle_ready(struct tnet *t, uint64_t id)
{
	struct tnode *n = &t->n[id];

	while (raft_has_ready(n->r)) {
		struct raft_ready rd;

		assert_int_equal(raft_ready_get(n->r, &rd), 0);
		for (size_t i = 0; i < rd.nmsgs; i++) {
			const struct raft_msg *m = &rd.msgs[i];

			if (t->cut[m->from][m->to] || (t->filter && t->filter(m)))
				continue;
			assert_true(t->nq < 256);
			qbuf_init(&t->q[t->nq]);
			assert_int_equal(raft_msg_encode(m, &t->q[t->nq]), 0);
			t->nq++;
		}
		if (rd.snapshot) {
			assert_true(rd.snapshot->len <= sizeof(n->snap));
			memcpy(n->snap, rd.snapshot->data, rd.snapshot->len);
			n->snap_len = rd.snapshot->len;
			n->snap_index = rd.snapshot->index;
			n->applied = rd.snapshot->index;
		}
		for (size_t i = 0; i < rd.ncommitted; i++) {
			const struct raft_entry *e = &rd.committed[i];

			assert_int_equal(e->index, n->applied + 1);
			n->applied = e->index;
			if (e->type == RAFT_ENTRY_NORMAL && e->len < sizeof(n->last_data)) {
				memcpy(n->last_data, e->data, e->len);
				n->last_data[e->len] = 0;
				n->napplied_normal++;
			}
		}
		for (size_t i = 0; i < rd.nreads && n->nreads < 16; i++)
			n->reads[n->nreads++] = rd.reads[i];
		/* Durable at once. */
		if (rd.hs_changed || rd.snapshot || rd.nentries)
			raft_persisted(n->r, rd.seq);
		raft_ready_free(&rd);
	}
}

/* Runs readies and delivers messages until nothing moves. */
static void pump(struct tnet *t)
{
	for (int round = 0; round < 10000; round++) {
		struct qbuf q[256];
		size_t nq;

		for (uint64_t id = 1; id <= MAXN; id++)
			if (t->n[id].r)
				handle_ready(t, id);
		if (!t->nq)
			return;
		nq = t->nq;
		memcpy(q, t->q, nq * sizeof(q[0]));
		t->nq = 0;
		for (size_t i = 0; i < nq; i++) {
			struct raft_msg m;

			assert_int_equal(raft_msg_decode(q[i].data, q[i].len, &m), 0);
			if (t->n[m.to].r && !t->cut[m.from][m.to])
				raft_step(t->n[m.to].r, &m);
			raft_msg_free(&m);
			qbuf_close(&q[i]);
		}
	}
	fail_msg("cluster did not settle");
}

static void tick(struct tnet *t, uint64_t id, int k)
{
	for (int i = 0; i < k; i++) {
		raft_tick(t->n[id].r);
		pump(t);
	}
}

static void tick_all(struct tnet *t, int k)
{
	for (int i = 0; i < k; i++) {
		for (uint64_t id = 1; id <= MAXN; id++)
			if (t->n[id].r)
				raft_tick(t->n[id].r);
		pump(t);
	}
}

static struct raft_status status(struct tnet *t, uint64_t id)
{
	struct raft_status st;

	raft_status_get(t->n[id].r, &st);
	return st;
}

static void isolate(struct tnet *t, uint64_t id, bool on)
{
	for (int i = 1; i <= MAXN; i++)
		t->cut[id][i] = t->cut[i][id] = on;
}

static void propose(struct tnet *t, uint64_t id, const char *s)
{
	assert_int_equal(raft_propose(t->n[id].r, (const uint8_t *)s, strlen(s)), 0);
	pump(t);
}

/* Node 1 times out first and wins. */
static struct tnet *elected(int n)
{
	struct tnet *t = cluster(n);

	pump(t);
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	return t;
}

/* ---- elections -------------------------------------------------------------- */

static void test_election(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	assert_int_equal(status(t, 1).term, 2); /* bootstrap term 1, then one election */
	for (uint64_t i = 2; i <= 3; i++) {
		assert_int_equal(status(t, i).role, RAFT_FOLLOWER);
		assert_int_equal(status(t, i).leader, 1);
		assert_int_equal(status(t, i).term, 2);
	}
	/* The leader's no-op and the bootstrap entry are committed everywhere. */
	for (uint64_t i = 1; i <= 3; i++)
		assert_int_equal(t->n[i].applied, 2);
	net_free(t);
}

static void test_prevote_keeps_term(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	isolate(t, 3, true);
	tick(t, 3, 100);
	/* PreVote never wins, so the term is not bumped while cut off. */
	assert_int_equal(status(t, 3).term, 2);
	assert_int_equal(status(t, 3).role, RAFT_PRECANDIDATE);
	isolate(t, 3, false);
	tick_all(t, 3);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	assert_int_equal(status(t, 1).term, 2);
	assert_int_equal(status(t, 3).leader, 1);
	net_free(t);
}

static void test_check_quorum(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	isolate(t, 1, true);
	/* Within two election timeouts (activity is sampled per timeout). */
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_FOLLOWER);
	assert_int_equal(status(t, 1).leader, 0);
	/* The majority elects a new leader in a later term. */
	tick_all(t, 40);
	assert_true(status(t, 2).role == RAFT_LEADER || status(t, 3).role == RAFT_LEADER);
	assert_true(status(t, 2).term > 2);
	net_free(t);
}

static void test_leader_unreachable(void **state)
{
	struct tnet *t = elected(3);
	int k = 0;

	(void)state;
	isolate(t, 1, true);
	raft_leader_unreachable(t->n[2].r);
	raft_leader_unreachable(t->n[3].r);
	assert_int_equal(status(t, 2).leader, 0);
	/* Far sooner than a full election timeout (10..19 ticks). */
	while (status(t, 2).role != RAFT_LEADER && status(t, 3).role != RAFT_LEADER && k < 8) {
		raft_tick(t->n[2].r);
		raft_tick(t->n[3].r);
		pump(t);
		k++;
	}
	assert_true(k < 8);
	assert_true(status(t, 2).term > 2);
	net_free(t);
}

static void test_vote_persisted_before_sent(void **state)
{
	struct tnet *t = cluster(3);
	struct raft_ready rd;
	struct raft_msg m = {
	    .type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 5, .index = 1, .log_term = 1};

	(void)state;
	pump(t);
	raft_step(t->n[2].r, &m);
	assert_int_equal(raft_ready_get(t->n[2].r, &rd), 0);
	assert_true(rd.hs_changed);
	assert_int_equal(rd.hs.term, 5);
	assert_int_equal(rd.hs.vote, 1);
	assert_int_equal(rd.nmsgs, 0); /* the grant waits for durability */
	raft_persisted(t->n[2].r, rd.seq);
	raft_ready_free(&rd);
	assert_int_equal(raft_ready_get(t->n[2].r, &rd), 0);
	assert_int_equal(rd.nmsgs, 1);
	assert_int_equal(rd.msgs[0].type, RAFT_MSG_VOTE_RESP);
	assert_false(rd.msgs[0].flags & RAFT_MSG_REJECT);
	raft_ready_free(&rd);
	/* A second candidate in the same term is refused. */
	m.from = 3;
	raft_step(t->n[2].r, &m);
	assert_int_equal(raft_ready_get(t->n[2].r, &rd), 0);
	assert_int_equal(rd.nmsgs, 1);
	assert_true(rd.msgs[0].flags & RAFT_MSG_REJECT);
	raft_ready_free(&rd);
	net_free(t);
}

/* ---- replication -------------------------------------------------------------- */

static void test_replication(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	propose(t, 1, "hello");
	propose(t, 1, "world");
	for (uint64_t i = 1; i <= 3; i++) {
		assert_int_equal(t->n[i].applied, 4);
		assert_string_equal(t->n[i].last_data, "world");
	}
	/* A follower that was away catches up by log. */
	isolate(t, 3, true);
	for (int i = 0; i < 10; i++)
		propose(t, 1, "more");
	assert_int_equal(t->n[3].applied, 4);
	assert_int_equal(t->n[1].applied, 14);
	isolate(t, 3, false);
	tick(t, 1, 2);
	assert_int_equal(t->n[3].applied, 14);
	net_free(t);
}

static void test_follower_ack_waits_for_persist(void **state)
{
	struct tnet *t = elected(3);
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
			     .from = 1,
			     .to = 2,
			     .term = 2,
			     .index = 2,
			     .log_term = 2,
			     .commit = 2};
	struct raft_entry e = {.index = 3,
			       .term = 2,
			       .type = RAFT_ENTRY_NORMAL,
			       .data = (const uint8_t *)"x",
			       .len = 1};
	struct raft_ready rd;

	(void)state;
	m.entries = &e;
	m.nentries = 1;
	raft_step(t->n[2].r, &m);
	assert_int_equal(raft_ready_get(t->n[2].r, &rd), 0);
	assert_int_equal(rd.nentries, 1);
	assert_int_equal(rd.nmsgs, 0);
	raft_persisted(t->n[2].r, rd.seq);
	raft_ready_free(&rd);
	assert_int_equal(raft_ready_get(t->n[2].r, &rd), 0);
	assert_int_equal(rd.nmsgs, 1);
	assert_int_equal(rd.msgs[0].type, RAFT_MSG_APPEND_RESP);
	assert_int_equal(rd.msgs[0].index, 3);
	raft_ready_free(&rd);
	net_free(t);
}

static struct tnet *filter_net;

/* Holds back the new leader's no-op (index 3) from followers that already
 * have entry 2; followers without it get it and reject, so probing works. */
static bool drop_index3(const struct raft_msg *m)
{
	struct raft_status st;

	if (m->type != RAFT_MSG_APPEND || !m->nentries || m->entries[m->nentries - 1].index < 3)
		return false;
	raft_status_get(filter_net->n[m->to].r, &st);
	return st.last_index >= 2;
}

/* §5.4.2: an entry from an earlier term is not committed by counting. */
static void test_commit_rule(void **state)
{
	struct raft_members mem = {3, {{1, true}, {2, true}, {3, true}}};
	struct tnet *t = calloc(1, sizeof(*t));
	struct raft_entry e1 = {.index = 1, .term = 1, .type = RAFT_ENTRY_CONF};
	struct raft_entry ents[2];
	struct raft_restore rs1 = {.hs = {.term = 1}}, rs = {.hs = {.term = 1}};
	struct raft_options o;
	struct tnet *boot = cluster(1);
	struct raft_ready rd;

	(void)state;
	/* Steal a valid bootstrap entry for three members. */
	raft_destroy(boot->n[1].r);
	boot->n[1].r = NULL;
	add_node(boot, 1, NULL, NULL);
	assert_int_equal(raft_bootstrap(boot->n[1].r, &mem), 0);
	raft_ready_get(boot->n[1].r, &rd);
	e1 = rd.entries[0];
	ents[0] = e1;
	ents[1] = (struct raft_entry){.index = 2,
				      .term = 1,
				      .type = RAFT_ENTRY_NORMAL,
				      .data = (const uint8_t *)"old",
				      .len = 3};
	rs1.entries = ents;
	rs1.nentries = 2;
	rs.entries = ents;
	rs.nentries = 1;
	opts(&o, 1);
	o.max_msg_entries = 1;
	add_node(t, 1, &o, &rs1);
	add_node(t, 2, NULL, &rs);
	add_node(t, 3, NULL, &rs);
	raft_ready_free(&rd);
	net_free(boot);

	filter_net = t;
	t->filter = drop_index3;
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	/* Followers hold entries 1 and 2 (term 1) but the leader's no-op at 3
	 * is held back: 1 and 2 are on every member and still must not commit. */
	assert_int_equal(status(t, 2).last_index, 2);
	assert_int_equal(status(t, 3).last_index, 2);
	assert_int_equal(status(t, 1).commit, 0);
	assert_int_equal(t->n[2].applied, 0);
	t->filter = NULL;
	tick(t, 1, 2);
	assert_int_equal(status(t, 1).commit, 3);
	assert_int_equal(t->n[2].applied, 3);
	assert_string_equal(t->n[2].last_data, "old");
	net_free(t);
}

/* ---- snapshots ----------------------------------------------------------------- */

static void test_snapshot_install(void **state)
{
	struct tnet *t = cluster(3);
	struct raft_options o;
	const char img[] = "0123456789abcdefghij";

	(void)state;
	/* Small chunks on the leader so the snapshot goes in several pieces. */
	raft_destroy(t->n[1].r);
	opts(&o, 1);
	o.snapshot_chunk = 6;
	t->n[1].r = NULL;
	add_node(t, 1, &o, NULL);
	{
		struct raft_members m = {3, {{1, true}, {2, true}, {3, true}}};

		assert_int_equal(raft_bootstrap(t->n[1].r, &m), 0);
	}
	pump(t);
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	isolate(t, 3, true);
	for (int i = 0; i < 8; i++)
		propose(t, 1, "v");
	assert_int_equal(t->n[1].applied, 10);
	assert_int_equal(raft_compact(t->n[1].r, 10, (const uint8_t *)img, sizeof(img), 0), 0);
	assert_int_equal(status(t, 1).snapshot_index, 10);
	isolate(t, 3, false);
	tick(t, 1, 12);
	assert_int_equal(t->n[3].snap_index, 10);
	assert_int_equal(t->n[3].snap_len, sizeof(img));
	assert_memory_equal(t->n[3].snap, img, sizeof(img));
	propose(t, 1, "after");
	tick(t, 1, 1);
	assert_int_equal(t->n[3].applied, 11);
	assert_string_equal(t->n[3].last_data, "after");
	assert_int_equal(status(t, 3).snapshot_index, 10);
	net_free(t);
}

/* A follower that lost its whole log (data dir wiped, restarted under the
 * same id) while the leader counts it as holding everything: its rejection
 * of the next append sends the leader back to what it has. */
static void test_wiped_follower_catches_up(void **state)
{
	struct tnet *t = elected(3);
	struct raft_members m = {3, {{1, true}, {2, true}, {3, true}}};

	(void)state;
	for (int i = 0; i < 5; i++)
		propose(t, 1, "v");
	tick(t, 1, 1);
	assert_int_equal(t->n[3].applied, t->n[1].applied);
	raft_destroy(t->n[3].r);
	memset(&t->n[3], 0, sizeof(t->n[3]));
	add_node(t, 3, NULL, NULL);
	assert_int_equal(raft_bootstrap(t->n[3].r, &m), 0);
	pump(t);
	propose(t, 1, "after");
	tick(t, 1, 2);
	assert_int_equal(status(t, 3).commit, status(t, 1).commit);
	assert_int_equal(t->n[3].applied, t->n[1].applied);
	assert_string_equal(t->n[3].last_data, "after");
	net_free(t);
}

/* raft_compact_buf() keeps the caller's buffer (no copy) and sends it as is;
 * it takes the reference over also when it refuses the index. */
static void test_compact_buf(void **state)
{
	struct tnet *t = cluster(3);
	const char img[] = "an image made on another thread";
	struct raft_buf *buf = raft_buf_new(img, sizeof(img));

	(void)state;
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	isolate(t, 3, true);
	for (int i = 0; i < 8; i++)
		propose(t, 1, "v");
	raft_buf_ref(buf);
	assert_int_equal(raft_compact_buf(t->n[1].r, t->n[1].applied + 1, buf, 0), QFS_EINVAL);
	assert_int_equal(buf->refs, 1);
	raft_buf_ref(buf);
	assert_int_equal(raft_compact_buf(t->n[1].r, t->n[1].applied, buf, 0), 0);
	assert_int_equal(buf->refs, 2);
	assert_int_equal(status(t, 1).snapshot_index, t->n[1].applied);
	isolate(t, 3, false);
	tick(t, 1, 12);
	assert_int_equal(t->n[3].snap_index, t->n[1].applied);
	assert_int_equal(t->n[3].snap_len, sizeof(img));
	assert_memory_equal(t->n[3].snap, img, sizeof(img));
	net_free(t);
	assert_int_equal(buf->refs, 1); /* the core let go of it */
	raft_buf_unref(buf);
}

/* ---- membership ----------------------------------------------------------------- */

static void test_membership(void **state)
{
	struct tnet *t = elected(3);
	struct raft_status st;
	uint64_t leader = 0;

	(void)state;
	add_node(t, 4, NULL, NULL); /* empty: learns everything from the leader */
	assert_int_equal(
	    raft_propose_conf(t->n[1].r, RAFT_CONF_ADD_LEARNER, 4, (const uint8_t *)"n4", 2), 0);
	/* One change at a time. */
	assert_int_equal(raft_propose_conf(t->n[1].r, RAFT_CONF_PROMOTE, 4, NULL, 0), QFS_EBUSY);
	pump(t);
	tick(t, 1, 3);
	st = status(t, 4);
	assert_int_equal(st.members.n, 4);
	assert_int_equal(t->n[4].applied, status(t, 1).commit);
	assert_int_equal(st.role, RAFT_FOLLOWER);
	/* A learner does not campaign. */
	isolate(t, 4, true);
	tick(t, 4, 50);
	assert_int_equal(status(t, 4).role, RAFT_FOLLOWER);
	isolate(t, 4, false);
	tick(t, 1, 2);

	assert_int_equal(raft_propose_conf(t->n[1].r, RAFT_CONF_PROMOTE, 2, NULL, 0), QFS_EINVAL);
	assert_int_equal(raft_propose_conf(t->n[1].r, RAFT_CONF_PROMOTE, 4, NULL, 0), 0);
	pump(t);
	st = status(t, 1);
	assert_true(st.members.m[3].voter);

	/* Remove the leader itself: it steps down once that commits. */
	assert_int_equal(raft_propose_conf(t->n[1].r, RAFT_CONF_REMOVE, 1, NULL, 0), 0);
	pump(t);
	tick_all(t, 30);
	assert_int_not_equal(status(t, 1).role, RAFT_LEADER);
	for (uint64_t i = 2; i <= 4; i++)
		if (status(t, i).role == RAFT_LEADER)
			leader = i;
	assert_int_not_equal(leader, 0);
	assert_int_equal(status(t, leader).members.n, 3);
	propose(t, leader, "after-remove");
	for (uint64_t i = 2; i <= 4; i++)
		assert_string_equal(t->n[i].last_data, "after-remove");
	net_free(t);
}

static void test_conf_decode(void **state)
{
	struct raft_conf_change c;
	uint8_t junk[3] = {1, 2, 3};

	(void)state;
	assert_int_equal(raft_conf_decode(junk, sizeof(junk), &c), QFS_EMSG);
	assert_int_equal(raft_conf_decode(junk, 0, &c), QFS_EMSG);
}

/* ---- transfer, reads, forwarding --------------------------------------------------- */

static void test_transfer(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	assert_int_equal(raft_transfer(t->n[2].r, 3), QFS_ENOTLEADER);
	assert_int_equal(raft_transfer(t->n[1].r, 3), 0);
	pump(t);
	assert_int_equal(status(t, 3).role, RAFT_LEADER);
	assert_int_equal(status(t, 3).term, 3);
	assert_int_equal(status(t, 1).leader, 3);
	propose(t, 3, "from-3");
	assert_string_equal(t->n[1].last_data, "from-3");
	net_free(t);
}

static void test_read_index(void **state)
{
	struct tnet *t = elected(3);

	(void)state;
	propose(t, 1, "x");
	assert_int_equal(raft_read_index(t->n[1].r, 77), 0);
	pump(t);
	assert_int_equal(t->n[1].nreads, 1);
	assert_int_equal(t->n[1].reads[0].ctx, 77);
	assert_int_equal(t->n[1].reads[0].index, 3);
	/* From a follower: forwarded, answered with the leader's commit. */
	assert_int_equal(raft_read_index(t->n[2].r, 78), 0);
	pump(t);
	assert_int_equal(t->n[2].nreads, 1);
	assert_int_equal(t->n[2].reads[0].ctx, 78);
	assert_int_equal(t->n[2].reads[0].index, 3);
	/* A leader cut off from the quorum cannot confirm: no answer. */
	isolate(t, 1, true);
	assert_int_equal(raft_read_index(t->n[1].r, 79), 0);
	pump(t);
	tick(t, 1, 3);
	assert_int_equal(t->n[1].nreads, 1);
	net_free(t);
}

static void test_forwarding(void **state)
{
	struct tnet *t = elected(3);
	struct tnet *u = cluster(3);

	(void)state;
	propose(t, 3, "via-follower");
	for (uint64_t i = 1; i <= 3; i++)
		assert_string_equal(t->n[i].last_data, "via-follower");
	/* No leader known yet: refused. */
	assert_int_equal(raft_propose(u->n[2].r, (const uint8_t *)"x", 1), QFS_ENOTLEADER);
	assert_int_equal(raft_read_index(u->n[2].r, 1), QFS_ENOTLEADER);
	net_free(t);
	net_free(u);
}

/* With stamp_offset, the leader writes its clock into every NORMAL entry it
 * appends, forwarded ones too: entry times are the leader's. Entries too
 * short to hold a stamp are left alone. */
static void test_leader_stamps_entries(void **state)
{
	struct tnet *t = calloc(1, sizeof(*t));
	struct raft_members m = {0};
	struct raft_options o;

	(void)state;
	for (int i = 1; i <= 3; i++)
		m.m[m.n++] = (struct raft_member){.id = (uint64_t)i, .voter = true};
	for (int i = 1; i <= 3; i++) {
		opts(&o, (uint64_t)i);
		o.stamp_offset = 2;
		add_node(t, (uint64_t)i, &o, NULL);
		assert_int_equal(raft_bootstrap(t->n[i].r, &m), 0);
		/* Every member's clock differs: byte value i everywhere. */
		raft_set_clock(t->n[i].r, (int64_t)(0x0101010101010101ull * (uint64_t)i));
	}
	pump(t);
	tick(t, 1, 20);
	assert_int_equal(status(t, 1).role, RAFT_LEADER);
	propose(t, 3, "ab--------cd"); /* forwarded from a follower */
	for (uint64_t i = 1; i <= 3; i++)
		assert_string_equal(t->n[i].last_data, "ab\1\1\1\1\1\1\1\1cd");
	propose(t, 1, "xy--------z"); /* the leader's own */
	for (uint64_t i = 1; i <= 3; i++)
		assert_string_equal(t->n[i].last_data, "xy\1\1\1\1\1\1\1\1z");
	propose(t, 2, "short");
	for (uint64_t i = 1; i <= 3; i++)
		assert_string_equal(t->n[i].last_data, "short");
	net_free(t);
}

static void test_restart_reapplies(void **state)
{
	struct raft_members m = {1, {{1, true}}};
	struct raft_options o;
	struct raft *r;
	struct raft_ready rd;
	struct raft_entry saved[8];
	size_t n = 0;
	struct raft_hardstate hs = {0};
	struct raft_restore rs;

	(void)state;
	opts(&o, 1);
	assert_int_equal(raft_create(&o, NULL, &r), 0);
	assert_int_equal(raft_bootstrap(r, &m), 0);
	for (int i = 0; i < 20; i++)
		raft_tick(r);
	assert_int_equal(raft_propose(r, (const uint8_t *)"a", 1), 0);
	while (raft_has_ready(r)) {
		raft_ready_get(r, &rd);
		for (size_t i = 0; i < rd.nentries; i++)
			raft_entry_copy(&saved[n++], &rd.entries[i]);
		if (rd.hs_changed)
			hs = rd.hs;
		raft_persisted(r, rd.seq);
		raft_ready_free(&rd);
	}
	assert_int_equal(n, 3);
	assert_int_equal(hs.commit, 3);
	raft_destroy(r);
	rs = (struct raft_restore){.hs = hs, .entries = saved, .nentries = n};
	assert_int_equal(raft_create(&o, &rs, &r), 0);
	raft_ready_get(r, &rd);
	assert_int_equal(rd.ncommitted, 3); /* handed out again to rebuild state */
	raft_ready_free(&rd);
	raft_destroy(r);
	/* Entries that do not follow each other are refused. */
	rs.entries = saved + 1;
	rs.nentries = 1;
	assert_int_equal(raft_create(&o, &rs, &r), QFS_EINVAL);
	for (size_t i = 0; i < n; i++)
		raft_entry_release(&saved[i]);
}

/* ---- wire codec --------------------------------------------------------------- */

static void sample_msgs(struct raft_msg *m, struct raft_entry *e)
{
	e[0] = (struct raft_entry){.index = 5,
				   .term = 2,
				   .type = RAFT_ENTRY_NORMAL,
				   .data = (const uint8_t *)"abc",
				   .len = 3};
	e[1] = (struct raft_entry){.index = 6, .term = 2, .type = RAFT_ENTRY_NOOP};
	m[0] = (struct raft_msg){.type = RAFT_MSG_APPEND,
				 .from = 1,
				 .to = 2,
				 .term = 2,
				 .index = 4,
				 .log_term = 1,
				 .commit = 3,
				 .entries = e,
				 .nentries = 2};
	m[1] = (struct raft_msg){.type = RAFT_MSG_SNAPSHOT,
				 .from = 1,
				 .to = 3,
				 .term = 9,
				 .offset = 2,
				 .total = 10,
				 .data = (const uint8_t *)"xyz",
				 .len = 3,
				 .flags = RAFT_MSG_DONE};
	m[1].snap.index = 40;
	m[1].snap.term = 8;
	m[1].snap.members = (struct raft_members){2, {{1, true}, {3, false}}};
	m[2] = (struct raft_msg){.type = RAFT_MSG_VOTE_RESP,
				 .from = 2,
				 .to = 1,
				 .term = 3,
				 .flags = RAFT_MSG_REJECT,
				 .ctx = 99,
				 .hint = 7};
}

static void test_codec_roundtrip(void **state)
{
	struct raft_msg m[3], d;
	struct raft_entry e[2];
	struct qbuf b;

	(void)state;
	sample_msgs(m, e);
	for (int i = 0; i < 3; i++) {
		qbuf_init(&b);
		assert_int_equal(raft_msg_encode(&m[i], &b), 0);
		assert_int_equal(raft_msg_decode(b.data, b.len, &d), 0);
		assert_int_equal(d.type, m[i].type);
		assert_int_equal(d.term, m[i].term);
		assert_int_equal(d.flags, m[i].flags);
		assert_int_equal(d.ctx, m[i].ctx);
		assert_int_equal(d.hint, m[i].hint);
		assert_int_equal(d.offset, m[i].offset);
		assert_int_equal(d.nentries, m[i].nentries);
		for (size_t k = 0; k < d.nentries; k++) {
			assert_int_equal(d.entries[k].index, m[i].entries[k].index);
			assert_int_equal(d.entries[k].len, m[i].entries[k].len);
			if (d.entries[k].len)
				assert_memory_equal(d.entries[k].data, m[i].entries[k].data,
						    d.entries[k].len);
		}
		if (m[i].type == RAFT_MSG_SNAPSHOT) {
			assert_int_equal(d.snap.index, 40);
			assert_int_equal(d.snap.members.n, 2);
			assert_false(d.snap.members.m[1].voter);
			assert_memory_equal(d.data, "xyz", 3);
		}
		raft_msg_free(&d);
		qbuf_close(&b);
	}
}

static void test_codec_garbage(void **state)
{
	struct raft_msg m[3], d;
	struct raft_entry e[2];
	uint64_t x = 12345;

	(void)state;
	sample_msgs(m, e);
	for (int i = 0; i < 3; i++) {
		struct qbuf b;
		uint8_t *copy;

		qbuf_init(&b);
		assert_int_equal(raft_msg_encode(&m[i], &b), 0);
		/* Every truncation is refused. */
		for (size_t len = 0; len < b.len; len++) {
			copy = malloc(len ? len : 1);
			memcpy(copy, b.data, len);
			assert_int_not_equal(raft_msg_decode(copy, len, &d), 0);
			free(copy);
		}
		/* Random bit flips never crash; what decodes is freed cleanly. */
		copy = malloc(b.len);
		for (int k = 0; k < 3000; k++) {
			memcpy(copy, b.data, b.len);
			for (int f = 0; f < 1 + k % 4; f++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				copy[(x >> 33) % b.len] ^= (uint8_t)(1u << ((x >> 20) % 8));
			}
			if (raft_msg_decode(copy, b.len, &d) == 0)
				raft_msg_free(&d);
		}
		free(copy);
		qbuf_close(&b);
	}
	/* A header claiming billions of entries fails before allocating. */
	{
		struct raft_msg big = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1};
		struct qbuf b;

		qbuf_init(&b);
		assert_int_equal(raft_msg_encode(&big, &b), 0);
		qfs_le32_put(b.data + b.len - 4, 0xffffffffu);
		assert_int_equal(raft_msg_decode(b.data, b.len, &d), QFS_EMSG);
		b.data[0] = 99; /* unknown version */
		assert_int_equal(raft_msg_decode(b.data, b.len, &d), QFS_EMSG);
		qbuf_close(&b);
	}
}

/* ---- dedup ------------------------------------------------------------------- */

static void test_dedup(void **state)
{
	struct raft_dedup d, d2;
	struct qbuf b;
	struct qreader rd;

	(void)state;
	raft_dedup_init(&d);
	assert_int_equal(raft_dedup_check(&d, 7, 1), 1);
	assert_int_equal(raft_dedup_check(&d, 7, 1), 0);
	assert_int_equal(raft_dedup_check(&d, 7, 3), 1);
	assert_int_equal(raft_dedup_check(&d, 7, 2), 1); /* out of order, new */
	assert_int_equal(raft_dedup_check(&d, 7, 2), 0);
	assert_int_equal(raft_dedup_check(&d, 8, 2), 1); /* other origin */
	assert_int_equal(raft_dedup_check(&d, 7, 200), 1);
	assert_int_equal(raft_dedup_check(&d, 7, 100), 0); /* below the window */
	qbuf_init(&b);
	assert_int_equal(raft_dedup_encode(&d, &b), 0);
	raft_dedup_init(&d2);
	qreader_init(&rd, b.data, b.len);
	assert_int_equal(raft_dedup_decode(&d2, &rd), 0);
	assert_int_equal(raft_dedup_check(&d2, 7, 200), 0);
	assert_int_equal(raft_dedup_check(&d2, 8, 2), 0);
	assert_int_equal(raft_dedup_check(&d2, 8, 3), 1);
	qreader_init(&rd, b.data, b.len - 1);
	assert_int_equal(raft_dedup_decode(&d2, &rd), QFS_EMSG);
	qbuf_close(&b);
	raft_dedup_close(&d);
	raft_dedup_close(&d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_election),
	    cmocka_unit_test(test_leader_stamps_entries),
	    cmocka_unit_test(test_prevote_keeps_term),
	    cmocka_unit_test(test_check_quorum),
	    cmocka_unit_test(test_leader_unreachable),
	    cmocka_unit_test(test_vote_persisted_before_sent),
	    cmocka_unit_test(test_replication),
	    cmocka_unit_test(test_follower_ack_waits_for_persist),
	    cmocka_unit_test(test_commit_rule),
	    cmocka_unit_test(test_snapshot_install),
	    cmocka_unit_test(test_wiped_follower_catches_up),
	    cmocka_unit_test(test_compact_buf),
	    cmocka_unit_test(test_membership),
	    cmocka_unit_test(test_conf_decode),
	    cmocka_unit_test(test_transfer),
	    cmocka_unit_test(test_read_index),
	    cmocka_unit_test(test_forwarding),
	    cmocka_unit_test(test_restart_reapplies),
	    cmocka_unit_test(test_codec_roundtrip),
	    cmocka_unit_test(test_codec_garbage),
	    cmocka_unit_test(test_dedup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
