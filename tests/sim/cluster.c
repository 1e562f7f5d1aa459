/*
 * The simulated cluster: members (Raft core + store + deduplication table),
 * their disks, the network, fault injection and the step loop. See sim.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../store/entry.h"
#include "sim.h"

#define TRACE_LINES 48
#define TRACE_LEN 200

struct sim_stats sim_stats;

void sim_stats_print(const char *who)
{
	const struct sim_stats *t = &sim_stats;

	printf("%s: %llu schedules, %llu steps, %llu msgs (%llu dropped), %llu crashes, "
	       "%llu leaders elected (max term %llu), %llu snapshots installed, "
	       "%llu membership changes committed (%llu leader self-removals proposed), %llu "
	       "transfers "
	       "requested, %llu writes, %llu reads, %llu background images (%llu entries and "
	       "%llu leader snapshots held back)\n",
	       who, (unsigned long long)t->schedules, (unsigned long long)t->steps,
	       (unsigned long long)t->msgs, (unsigned long long)t->dropped,
	       (unsigned long long)t->crashes, (unsigned long long)t->elections,
	       (unsigned long long)t->max_term, (unsigned long long)t->snapshots_sent,
	       (unsigned long long)t->confs_committed, (unsigned long long)t->leader_removed,
	       (unsigned long long)t->transfers, (unsigned long long)t->writes,
	       (unsigned long long)t->reads, (unsigned long long)t->holds,
	       (unsigned long long)t->held, (unsigned long long)t->held_snaps);
}

static char trace_ring[TRACE_LINES][TRACE_LEN];
static unsigned trace_next;

uint64_t sim_rand(struct sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t sim_below(struct sim *s, uint64_t n)
{
	return n ? sim_rand(s) % n : 0;
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
	char *line = trace_ring[trace_next++ % TRACE_LINES];
	int k = snprintf(line, TRACE_LEN, "t=%llu ", (unsigned long long)s->now);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line + k, TRACE_LEN - k, fmt, ap);
	va_end(ap);
	if (s->verbose)
		printf("%s\n", line);
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	if (!s->verbose) {
		fprintf(stderr, "--- last %d trace lines ---\n", TRACE_LINES);
		for (unsigned i = 0; i < TRACE_LINES; i++) {
			const char *l = trace_ring[(trace_next + i) % TRACE_LINES];

			if (l[0])
				fprintf(stderr, "  %s\n", l);
		}
	}
	fprintf(stderr, "SIM FAILURE seed=%llu t=%llu: ", (unsigned long long)s->seed,
		(unsigned long long)s->now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nreplay: build/asan/tests/sim/sim --seed %llu -v\n",
		(unsigned long long)s->seed);
	exit(1);
}

struct sim_node *sim_node(struct sim *s, uint64_t id)
{
	return id >= 1 && id <= SIM_MAX_NODES ? &s->nodes[id] : NULL;
}

uint64_t sim_leader(struct sim *s)
{
	uint64_t best = 0, bterm = 0;

	for (uint64_t i = 1; i <= SIM_MAX_NODES; i++) {
		struct sim_node *n = &s->nodes[i];
		struct raft_status st;

		if (!n->up)
			continue;
		raft_status_get(n->r, &st);
		if (st.role == RAFT_LEADER && st.term >= bterm) {
			best = i;
			bterm = st.term;
		}
	}
	return best;
}

static const struct raft_member *members_find(const struct raft_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->m[i].id == id)
			return &m->m[i];
	return NULL;
}

/* ---- disk ------------------------------------------------------------------ */

static void snap_set(struct raft_snapshot *dst, const struct raft_snapshot *src)
{
	raft_buf_unref(dst->buf);
	*dst = *src;
	dst->buf = raft_buf_ref(src->buf);
}

static void disk_drop_upto(struct sim_disk *d, uint64_t index)
{
	size_t k = 0;

	while (k < d->n && d->entries[k].index <= index)
		raft_entry_release(&d->entries[k++]);
	if (k)
		memmove(d->entries, d->entries + k, (d->n - k) * sizeof(*d->entries));
	d->n -= k;
}

static void disk_append(struct sim_disk *d, const struct raft_entry *e)
{
	/* WAL rule: an entry at index i replaces everything >= i. */
	while (d->n && d->entries[d->n - 1].index >= e->index)
		raft_entry_release(&d->entries[--d->n]);
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 64;
		d->entries = realloc(d->entries, d->cap * sizeof(*d->entries));
	}
	raft_entry_copy(&d->entries[d->n++], e);
}

static void disk_close(struct sim_disk *d)
{
	disk_drop_upto(d, UINT64_MAX);
	free(d->entries);
	raft_buf_unref(d->snap.buf);
	memset(d, 0, sizeof(*d));
}

static void write_free(struct sim_write *w)
{
	for (size_t i = 0; i < w->nentries; i++)
		raft_entry_release(&w->entries[i]);
	free(w->entries);
	raft_buf_unref(w->snap.buf);
}

/* ---- state machine ----------------------------------------------------------- */

static void sm_load(struct sim *s, struct sim_node *n, const struct raft_snapshot *sn)
{
	struct qreader rd;
	uint32_t stlen;
	const uint8_t *stp;

	qreader_init(&rd, sn->data, sn->len);
	stlen = qreader_u32(&rd);
	stp = qreader_raw(&rd, stlen);
	if (!stp || store_snapshot_load(n->st, stp, stlen) || raft_dedup_decode(&n->dd, &rd) ||
	    rd.left)
		sim_fail(s, "node %llu: cannot load snapshot %llu", (unsigned long long)n->id,
			 (unsigned long long)sn->index);
	if (store_applied_index(n->st) != sn->index)
		sim_fail(s, "node %llu: snapshot %llu has applied index %llu",
			 (unsigned long long)n->id, (unsigned long long)sn->index,
			 (unsigned long long)store_applied_index(n->st));
	sim_check_snapshot_loaded(s, n, sn->index);
	sim_clients_on_node_applied(s, n);
}

static void sm_save(struct sim_node *n, struct qbuf *b)
{
	struct qbuf st;

	qbuf_init(&st);
	store_snapshot_save(n->st, &st);
	qbuf_put_bytes(b, st.data, st.len);
	raft_dedup_encode(&n->dd, b);
	qbuf_close(&st);
}

static void sm_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
	if (store_applied_index(n->st) + 1 != e->index)
		sim_fail(s, "node %llu applies %llu after %llu", (unsigned long long)n->id,
			 (unsigned long long)e->index,
			 (unsigned long long)store_applied_index(n->st));
	if (e->type == RAFT_ENTRY_NORMAL && e->len >= ENTRY_HEADER_SIZE) {
		uint64_t origin = qfs_le64_get(e->data + 2), reqid = qfs_le64_get(e->data + 10);
		int fresh = raft_dedup_check(&n->dd, origin, reqid);
		struct store_result res;

		if (fresh)
			store_apply(n->st, e->index, e->data, e->len, &res);
		else
			store_skip(n->st, e->index);
		sim_clients_on_apply(s, n, origin, reqid, !fresh, e->index);
	} else {
		store_skip(n->st, e->index);
		if (e->type == RAFT_ENTRY_CONF) {
			struct raft_conf_change c;

			if (raft_conf_decode(e->data, e->len, &c))
				sim_fail(s, "bad conf entry %llu", (unsigned long long)e->index);
			if (e->index > s->committed_conf_index) {
				if (c.op)
					sim_stats.confs_committed++;
				s->committed_conf = c.members;
				s->committed_conf_index = e->index;
			}
		}
	}
	sim_check_apply(s, n, e);
	if (e->index > s->max_applied)
		s->max_applied = e->index;
	sim_clients_on_node_applied(s, n);
}

/* ---- images built in the background ------------------------------------------ */

static void held_push(struct sim_node *n, const struct raft_entry *e,
		      const struct raft_snapshot *sn)
{
	struct sim_held *h;

	if (n->nheld == n->caph) {
		n->caph = n->caph ? n->caph * 2 : 16;
		n->held = realloc(n->held, n->caph * sizeof(*n->held));
	}
	h = &n->held[n->nheld++];
	memset(h, 0, sizeof(*h));
	h->snap = sn != NULL;
	if (sn) {
		sim_stats.held_snaps++;
		h->sn = *sn;
		h->sn.buf = raft_buf_ref(sn->buf);
	} else {
		raft_entry_copy(&h->e, e);
		sim_stats.held++;
	}
}

static void held_drop(struct sim_node *n)
{
	for (size_t i = 0; i < n->nheld; i++) {
		if (n->held[i].snap)
			raft_buf_unref(n->held[i].sn.buf);
		else
			raft_entry_release(&n->held[i].e);
	}
	free(n->held);
	n->held = NULL;
	n->nheld = n->caph = 0;
	if (n->hold_until)
		qbuf_close(&n->image);
	n->hold_until = 0;
}

/* ---- members ---------------------------------------------------------------- */

static void node_opts(struct sim *s, struct sim_node *n, struct raft_options *o)
{
	raft_options_default(o, n->id);
	o->election_ticks = 10;
	o->heartbeat_ticks = 1;
	o->rand_seed = sim_rand(s);
	o->max_msg_entries = 1 + sim_below(s, 8);
	o->max_msg_bytes = 512;
	o->max_inflight = 1 + sim_below(s, 4);
	o->snapshot_chunk = s->p.chunk;
}

static void node_start(struct sim *s, struct sim_node *n)
{
	struct store_config sc = {0};
	struct raft_options o;
	struct raft_restore rs = {
	    .hs = n->disk.hs, .entries = n->disk.entries, .nentries = n->disk.n};
	int rc;

	if (store_create(&sc, &n->st))
		sim_fail(s, "store_create");
	raft_dedup_init(&n->dd);
	if (n->disk.snap.index) {
		rs.snapshot = &n->disk.snap;
		sm_load(s, n, &n->disk.snap);
	}
	node_opts(s, n, &o);
	rc = raft_create(&o, &rs, &n->r);
	if (rc)
		sim_fail(s, "node %llu: raft_create: %s", (unsigned long long)n->id,
			 qfs_strerror(rc));
	n->up = true;
	n->checked_commit = n->disk.snap.index;
	n->role = RAFT_FOLLOWER;
	n->term = n->disk.hs.term;
	n->tick_phase = sim_below(s, SIM_TICK);
}

static void disk_write(struct sim_disk *d, const struct sim_write *w);

static void node_stop(struct sim *s, struct sim_node *n, bool crash)
{
	/* A crash may land after some writes reached the disk but before
	 * anyone heard about it: a random prefix of the queue survives. */
	bool lost = !crash;

	for (size_t i = 0; i < n->nwrites; i++) {
		if (!lost && sim_below(s, 2))
			disk_write(&n->disk, &n->writes[i]);
		else
			lost = true;
		write_free(&n->writes[i]);
	}
	n->nwrites = 0;
	held_drop(n);
	raft_destroy(n->r);
	n->r = NULL;
	store_destroy(n->st);
	n->st = NULL;
	raft_dedup_close(&n->dd);
	n->up = false;
	sim_clients_on_crash(s, n);
}

static void disk_write(struct sim_disk *d, const struct sim_write *w)
{
	if (w->snap.index && w->snap.index > d->snap.index) {
		if (w->snap.discard_log)
			disk_drop_upto(d, UINT64_MAX);
		else
			disk_drop_upto(d, w->snap.index);
		snap_set(&d->snap, &w->snap);
	}
	for (size_t i = 0; i < w->nentries; i++)
		disk_append(d, &w->entries[i]);
	if (w->hs_changed)
		d->hs = w->hs;
}

static void write_complete(struct sim *s, struct sim_node *n, struct sim_write *w)
{
	disk_write(&n->disk, w);
	if (w->snap.index && n->hold_until)
		held_push(n, NULL, &w->snap);
	else if (w->snap.index)
		sm_load(s, n, &w->snap);
	raft_persisted(n->r, w->seq);
}

/* ---- network ----------------------------------------------------------------- */

static void net_push(struct sim *s, uint64_t from, uint64_t to, const uint8_t *b, size_t len)
{
	struct sim_packet *p;

	if (s->nnet == s->capnet) {
		s->capnet = s->capnet ? s->capnet * 2 : 256;
		s->net = realloc(s->net, s->capnet * sizeof(*s->net));
	}
	p = &s->net[s->nnet++];
	p->due = s->now + 1 + sim_below(s, s->p.delay_max);
	p->from = from;
	p->to = to;
	p->len = len;
	p->bytes = malloc(len);
	memcpy(p->bytes, b, len);
}

static void net_send(struct sim *s, const struct raft_msg *m)
{
	struct qbuf b;

	s->msgs_sent++;
	if (s->verbose)
		sim_trace(
		    s,
		    "  msg %d n%llu->n%llu term %llu idx %llu lt %llu commit %llu n %zu flags %u "
		    "off %llu/%llu",
		    m->type, (unsigned long long)m->from, (unsigned long long)m->to,
		    (unsigned long long)m->term, (unsigned long long)m->index,
		    (unsigned long long)m->log_term, (unsigned long long)m->commit, m->nentries,
		    m->flags, (unsigned long long)m->offset, (unsigned long long)m->total);
	if (m->to < 1 || m->to > SIM_MAX_NODES) {
		s->msgs_dropped++;
		return;
	}
	if (!s->quiet && (s->blocked[m->from][m->to] || sim_below(s, 1000) < s->p.drop_pct10)) {
		s->msgs_dropped++;
		return;
	}
	qbuf_init(&b);
	if (raft_msg_encode(m, &b))
		sim_fail(s, "encode failed");
	net_push(s, m->from, m->to, b.data, b.len);
	if (!s->quiet && sim_below(s, 1000) < s->p.dup_pct10)
		net_push(s, m->from, m->to, b.data, b.len);
	qbuf_close(&b);
}

static void process_ready(struct sim *s, struct sim_node *n);

static void net_deliver(struct sim *s)
{
	size_t i = 0;

	while (i < s->nnet) {
		struct sim_packet p = s->net[i];
		struct sim_node *n;
		struct raft_msg m;

		if (p.due > s->now) {
			i++;
			continue;
		}
		s->net[i] = s->net[--s->nnet]; /* order among due packets is random-ish */
		n = sim_node(s, p.to);
		if (n && n->up && (s->quiet || !s->blocked[p.from][p.to])) {
			int rc = raft_msg_decode(p.bytes, p.len, &m);

			if (rc)
				sim_fail(s, "decode of our own encoding failed: %s",
					 qfs_strerror(rc));
			raft_step(n->r, &m);
			raft_msg_free(&m);
			process_ready(s, n);
		}
		free(p.bytes);
	}
}

/* ---- ready processing ---------------------------------------------------------- */

static void process_ready(struct sim *s, struct sim_node *n)
{
	while (n->up && raft_has_ready(n->r)) {
		struct raft_ready rd;

		raft_ready_get(n->r, &rd);
		if (rd.soft_changed || rd.role != n->role || rd.term != n->term) {
			if (rd.role == RAFT_LEADER && n->role != RAFT_LEADER) {
				sim_stats.elections++;
				if (rd.term > sim_stats.max_term)
					sim_stats.max_term = rd.term;
			}
			if (rd.role != n->role)
				sim_trace(
				    s, "n%llu %s term %llu leader %llu", (unsigned long long)n->id,
				    (const char *[]){"follower", "precandidate", "candidate",
						     "leader"}[rd.role],
				    (unsigned long long)rd.term, (unsigned long long)rd.leader);
			sim_check_role(s, n, rd.role, rd.term);
			n->role = rd.role;
			n->term = rd.term;
		}
		sim_check_entries(s, n, rd.entries, rd.nentries);
		if (rd.hs_changed || rd.snapshot || rd.nentries) {
			struct sim_write w = {.seq = rd.seq,
					      .hs_changed = rd.hs_changed,
					      .hs = rd.hs,
					      .nentries = rd.nentries};
			uint64_t due = s->now + sim_below(s, s->p.disk_max + 1);

			if (n->nwrites && n->writes[n->nwrites - 1].due > due)
				due = n->writes[n->nwrites - 1].due;
			w.due = due;
			if (rd.snapshot) {
				w.snap = *rd.snapshot;
				w.snap.buf = raft_buf_ref(rd.snapshot->buf);
				sim_stats.snapshots_sent++;
				sim_trace(s, "n%llu receives snapshot %llu",
					  (unsigned long long)n->id,
					  (unsigned long long)rd.snapshot->index);
			}
			if (rd.nentries) {
				w.entries = calloc(rd.nentries, sizeof(*w.entries));
				for (size_t i = 0; i < rd.nentries; i++)
					raft_entry_copy(&w.entries[i], &rd.entries[i]);
			}
			if (n->nwrites == n->capw) {
				n->capw = n->capw ? n->capw * 2 : 8;
				n->writes = realloc(n->writes, n->capw * sizeof(*n->writes));
			}
			n->writes[n->nwrites++] = w;
		}
		for (size_t i = 0; i < rd.nmsgs; i++)
			net_send(s, &rd.msgs[i]);
		for (size_t i = 0; i < rd.ncommitted; i++) {
			if (n->hold_until)
				held_push(n, &rd.committed[i], NULL);
			else
				sm_apply(s, n, &rd.committed[i]);
		}
		for (size_t i = 0; i < rd.nreads; i++)
			sim_clients_on_read_state(s, n, rd.reads[i].ctx, rd.reads[i].index);
		raft_ready_free(&rd);
		sim_check_commit(s, n);
	}
}

static void disks_step(struct sim *s)
{
	for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
		struct sim_node *n = &s->nodes[id];

		while (n->up && n->nwrites && n->writes[0].due <= s->now) {
			struct sim_write w = n->writes[0];

			memmove(n->writes, n->writes + 1, (n->nwrites - 1) * sizeof(*n->writes));
			n->nwrites--;
			write_complete(s, n, &w);
			write_free(&w);
			process_ready(s, n);
		}
	}
}

/* The member made its image at index durable: compaction follows. A leader's
 * snapshot loaded since is newer: the core refuses the old image then. */
static void snapshot_compact(struct sim *s, struct sim_node *n, uint64_t index,
			     const struct qbuf *b)
{
	if (index > n->disk.snap.index &&
	    raft_compact(n->r, index, b->data, b->len, sim_below(s, 4)) == 0) {
		struct raft_snapshot sn = {.index = index, .data = b->data, .len = b->len};

		raft_term_at(n->r, index, &sn.term);
		sn.buf = raft_buf_new(b->data, b->len);
		sn.data = sn.buf->data;
		if (raft_members_at(n->r, index, &sn.members))
			sim_fail(s, "no configuration at %llu", (unsigned long long)index);
		raft_buf_unref(n->disk.snap.buf);
		n->disk.snap = sn;
		disk_drop_upto(&n->disk, index);
		sim_trace(s, "n%llu snapshot at %llu", (unsigned long long)n->id,
			  (unsigned long long)index);
	}
}

/* An image is taken now; nothing changes the state until it is done. For a
 * snapshot (compact) or, like `snapshot save`, for someone else. */
static void hold_start(struct sim *s, struct sim_node *n, bool compact)
{
	qbuf_init(&n->image);
	sm_save(n, &n->image);
	n->image_index = store_applied_index(n->st);
	n->image_compact = compact;
	n->hold_until = s->now + 1 + sim_below(s, s->p.hold_max);
	sim_stats.holds++;
	sim_trace(s, "n%llu builds an image at %llu until t=%llu%s", (unsigned long long)n->id,
		  (unsigned long long)n->image_index, (unsigned long long)n->hold_until,
		  compact ? "" : " (a save)");
}

static void maybe_snapshot(struct sim *s, struct sim_node *n)
{
	uint64_t applied = store_applied_index(n->st);
	struct qbuf b;

	if (n->hold_until || applied < n->disk.snap.index + s->p.snap_every)
		return;
	if (s->p.hold_max && sim_below(s, 2)) {
		hold_start(s, n, true);
		return;
	}
	qbuf_init(&b);
	sm_save(n, &b);
	snapshot_compact(s, n, applied, &b);
	qbuf_close(&b);
}

/* The image is done: compact with it, then apply what waited, in order. */
static void hold_step(struct sim *s, struct sim_node *n)
{
	struct sim_held *held = n->held;
	size_t k = n->nheld;

	if (!n->hold_until || s->now < n->hold_until)
		return;
	n->hold_until = 0;
	if (n->image_compact)
		snapshot_compact(s, n, n->image_index, &n->image);
	qbuf_close(&n->image);
	sim_trace(s, "n%llu image at %llu done, %zu held back", (unsigned long long)n->id,
		  (unsigned long long)n->image_index, k);
	n->held = NULL;
	n->nheld = n->caph = 0;
	for (size_t i = 0; i < k; i++) {
		if (held[i].snap) {
			sm_load(s, n, &held[i].sn);
			raft_buf_unref(held[i].sn.buf);
		} else {
			sm_apply(s, n, &held[i].e); /* fails unless next in order */
			raft_entry_release(&held[i].e);
		}
	}
	free(held);
}

/* ---- faults ------------------------------------------------------------------ */

static uint64_t random_node(struct sim *s, bool up_only)
{
	uint64_t ids[SIM_MAX_NODES], k = 0;

	for (uint64_t i = 1; i <= SIM_MAX_NODES; i++)
		if (s->nodes[i].exists && (!up_only || s->nodes[i].up))
			ids[k++] = i;
	return k ? ids[sim_below(s, k)] : 0;
}

static void heal(struct sim *s)
{
	memset(s->blocked, 0, sizeof(s->blocked));
}

static void inject_partition(struct sim *s)
{
	uint64_t a = random_node(s, false), b = random_node(s, false);

	if (sim_below(s, 2) && sim_leader(s))
		a = sim_leader(s);
	switch (sim_below(s, 4)) {
	case 0:
		heal(s);
		sim_trace(s, "heal");
		break;
	case 1: /* isolate a */
		for (uint64_t i = 1; i <= SIM_MAX_NODES; i++)
			s->blocked[a][i] = s->blocked[i][a] = i != a;
		sim_trace(s, "isolate n%llu", (unsigned long long)a);
		break;
	case 2: /* one-way */
		if (a != b) {
			s->blocked[a][b] = true;
			sim_trace(s, "block n%llu -> n%llu", (unsigned long long)a,
				  (unsigned long long)b);
		}
		break;
	default: { /* random split in two */
		uint64_t side = sim_rand(s);

		for (uint64_t i = 1; i <= SIM_MAX_NODES; i++)
			for (uint64_t j = 1; j <= SIM_MAX_NODES; j++)
				s->blocked[i][j] = ((side >> i) & 1) != ((side >> j) & 1);
		sim_trace(s, "split %llx", (unsigned long long)(side & 0x1fe));
		break;
	}
	}
}

static void inject_crash(struct sim *s)
{
	/* Leaders half the time: they hold the uncommitted tails that make the
	 * interesting histories (§5.4.2, Figure 8). */
	uint64_t id = sim_below(s, 2) && sim_leader(s) ? sim_leader(s) : random_node(s, true);
	struct sim_node *n = sim_node(s, id);

	if (!n)
		return;
	sim_stats.crashes++;
	sim_trace(s, "crash n%llu (%zu writes lost)", (unsigned long long)id, n->nwrites);
	node_stop(s, n, true);
	n->restart_at = s->now + 20 + sim_below(s, 300);
	/* Members connected to it see the connection reset (sometimes). */
	for (uint64_t i = 1; i <= SIM_MAX_NODES; i++) {
		struct sim_node *f = &s->nodes[i];
		struct raft_status st;

		if (!f->up || s->blocked[i][id] || sim_below(s, 2))
			continue;
		raft_status_get(f->r, &st);
		if (st.leader == id)
			raft_leader_unreachable(f->r);
	}
}

static void inject_conf(struct sim *s)
{
	uint64_t lid = sim_leader(s), target = 0;
	struct sim_node *l = sim_node(s, lid);
	struct raft_status st;
	enum raft_conf_op op;
	size_t voters = 0;
	int rc;

	if (!l)
		return;
	raft_status_get(l->r, &st);
	for (uint32_t i = 0; i < st.members.n; i++)
		voters += st.members.m[i].voter;
	switch (sim_below(s, 3)) {
	case 0:
		op = RAFT_CONF_ADD_LEARNER;
		/* Member ids are never reused (as in etcd): only a new node or
		 * one whose addition was lost. */
		for (uint64_t i = 1; i <= SIM_MAX_NODES && !target; i++)
			if (s->nodes[i].exists && !s->nodes[i].was_member &&
			    !members_find(&st.members, i))
				target = i;
		if (!target && s->next_id <= SIM_MAX_NODES)
			target = s->next_id;
		break;
	case 1:
		op = RAFT_CONF_PROMOTE;
		for (uint32_t i = 0; i < st.members.n && !target; i++)
			if (!st.members.m[i].voter)
				target = st.members.m[i].id;
		break;
	default:
		op = RAFT_CONF_REMOVE;
		if (voters >= 3 || st.members.n > voters)
			target = st.members.m[sim_below(s, st.members.n)].id;
		if (target && voters < 3 && members_find(&st.members, target)->voter)
			target = 0;
		break;
	}
	if (!target)
		return;
	rc = raft_propose_conf(l->r, op, target, NULL, 0);
	sim_trace(s, "n%llu proposes %s n%llu: %s", (unsigned long long)lid,
		  op == RAFT_CONF_ADD_LEARNER ? "add-learner"
		  : op == RAFT_CONF_PROMOTE   ? "promote"
					      : "remove",
		  (unsigned long long)target, qfs_strerror(rc));
	if (rc == 0 && op == RAFT_CONF_REMOVE && target == lid)
		sim_stats.leader_removed++;
	if (rc == 0 && op == RAFT_CONF_ADD_LEARNER && !s->nodes[target].exists) {
		struct sim_node *n = &s->nodes[target];

		memset(n, 0, sizeof(*n));
		n->id = target;
		n->exists = true;
		if (target >= s->next_id)
			s->next_id = target + 1;
		node_start(s, n);
	}
	process_ready(s, l);
}

static void inject_transfer(struct sim *s)
{
	uint64_t lid = sim_leader(s), to = random_node(s, false);
	struct sim_node *l = sim_node(s, lid);

	if (!l || !to || to == lid)
		return;
	sim_stats.transfers++;
	sim_trace(s, "n%llu transfer to n%llu: %s", (unsigned long long)lid, (unsigned long long)to,
		  qfs_strerror(raft_transfer(l->r, to)));
	process_ready(s, l);
}

/* Members removed by a committed change are shut down for good. */
static void reap_removed(struct sim *s)
{
	if (!s->committed_conf_index)
		return;
	for (uint64_t i = 1; i <= SIM_MAX_NODES; i++) {
		struct sim_node *n = &s->nodes[i];

		if (!n->exists)
			continue;
		if (members_find(&s->committed_conf, i)) {
			n->was_member = true;
			continue;
		}
		if (!n->was_member)
			continue; /* a learner whose addition is still in flight */
		sim_trace(s, "n%llu removed for good", (unsigned long long)i);
		if (n->up)
			node_stop(s, n, false);
		n->exists = false;
		for (uint64_t j = 1; j <= SIM_MAX_NODES; j++)
			s->blocked[i][j] = s->blocked[j][i] = false;
	}
}

/* ---- the run ------------------------------------------------------------------- */

static void choose_params(struct sim *s)
{
	struct sim_params *p = &s->p;

	p->drop_pct10 = (unsigned)sim_below(s, 4) * 30; /* 0..9 % */
	p->dup_pct10 = (unsigned)sim_below(s, 3) * 20;	/* 0..4 % */
	p->delay_max = 1 + (unsigned)sim_below(s, 20);
	p->disk_max = (unsigned)sim_below(s, 12);
	p->crash_pm = (unsigned)sim_below(s, 4) * 10;
	p->part_pm = (unsigned)sim_below(s, 4) * 10;
	p->conf_pm = (unsigned)sim_below(s, 4) * 15;
	p->transfer_pm = (unsigned)sim_below(s, 3) * 10;
	p->client_pct = 3 + (unsigned)sim_below(s, 8);
	p->snap_every = 10 + (unsigned)sim_below(s, 40);
	p->chunk = 512 + sim_below(s, 4096);
	p->hold_max = (unsigned)sim_below(s, 3) * 150; /* up to 3 election timeouts */
	p->chaos_end = 4000;
	p->end = 5500;
}

static void all_step(struct sim *s)
{
	if (!s->quiet) {
		if (sim_below(s, 10000) < s->p.part_pm)
			inject_partition(s);
		if (sim_below(s, 10000) < s->p.crash_pm)
			inject_crash(s);
		if (sim_below(s, 10000) < s->p.conf_pm)
			inject_conf(s);
		if (sim_below(s, 10000) < s->p.transfer_pm)
			inject_transfer(s);
	}
	for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
		struct sim_node *n = &s->nodes[id];

		if (n->exists && !n->up && s->now >= n->restart_at) {
			sim_trace(s, "restart n%llu", (unsigned long long)id);
			node_start(s, n);
		}
	}
	net_deliver(s);
	disks_step(s);
	for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
		struct sim_node *n = &s->nodes[id];

		if (!n->up)
			continue;
		if (s->now % SIM_TICK == n->tick_phase)
			raft_tick(n->r);
		hold_step(s, n);
		if (s->p.hold_max && !s->quiet && !n->hold_until && sim_below(s, 1000) < 3)
			hold_start(s, n, false);
		process_ready(s, n);
		maybe_snapshot(s, n);
		process_ready(s, n);
	}
	sim_clients_step(s);
	reap_removed(s);
}

static bool converged(struct sim *s)
{
	uint64_t lid = sim_leader(s);
	struct raft_status ls;

	if (!lid || !sim_clients_idle(s))
		return false;
	raft_status_get(s->nodes[lid].r, &ls);
	for (uint32_t i = 0; i < ls.members.n; i++) {
		struct sim_node *n = sim_node(s, ls.members.m[i].id);
		struct raft_status st;

		if (!n || !n->up || n->hold_until)
			return false;
		raft_status_get(n->r, &st);
		if (st.applied != ls.commit || st.term != ls.term || st.leader != lid)
			return false;
	}
	return true;
}

int sim_run(uint64_t seed, bool verbose)
{
	struct sim *s = calloc(1, sizeof(*s));
	struct raft_members init = {0};
	uint64_t nvoters;
	bool ok = false;
	uint64_t reads, ops;

	memset(trace_ring, 0, sizeof(trace_ring));
	trace_next = 0;
	s->seed = seed;
	s->rng = seed * 0x2545f4914f6cdd1dull + 1;
	s->verbose = verbose;
	choose_params(s);
	s->chk = sim_check_create();
	s->cl = sim_clients_create();
	nvoters = sim_below(s, 2) ? 3 : 5;
	for (uint64_t i = 1; i <= nvoters; i++)
		init.m[init.n++] = (struct raft_member){.id = i, .voter = true};
	for (uint64_t i = 1; i <= nvoters; i++) {
		struct sim_node *n = &s->nodes[i];

		n->id = i;
		n->exists = true;
		node_start(s, n);
		if (raft_bootstrap(n->r, &init))
			sim_fail(s, "bootstrap");
		process_ready(s, n);
	}
	s->next_id = nvoters + 1;
	sim_trace(s,
		  "seed %llu: %llu voters drop %u/1000 dup %u/1000 delay<=%u disk<=%u "
		  "crash %u part %u conf %u transfer %u",
		  (unsigned long long)seed, (unsigned long long)nvoters, s->p.drop_pct10,
		  s->p.dup_pct10, s->p.delay_max, s->p.disk_max, s->p.crash_pm, s->p.part_pm,
		  s->p.conf_pm, s->p.transfer_pm);
	for (s->now = 1; s->now <= s->p.end; s->now++) {
		if (!s->quiet && s->now >= s->p.chaos_end) {
			s->quiet = true;
			heal(s);
			for (uint64_t id = 1; id <= SIM_MAX_NODES; id++)
				if (s->nodes[id].exists && !s->nodes[id].up)
					s->nodes[id].restart_at = s->now;
			sim_trace(s, "quiet: healed, restarting everyone");
		}
		all_step(s);
		if (s->quiet && converged(s)) {
			ok = true;
			break;
		}
	}
	if (!ok) {
		for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
			struct sim_node *n = &s->nodes[id];
			struct raft_status st;

			if (!n->up)
				continue;
			raft_status_get(n->r, &st);
			sim_trace(s,
				  "n%llu role %d term %llu leader %llu commit %llu applied %llu "
				  "last %llu members %u",
				  (unsigned long long)id, st.role, (unsigned long long)st.term,
				  (unsigned long long)st.leader, (unsigned long long)st.commit,
				  (unsigned long long)st.applied, (unsigned long long)st.last_index,
				  st.members.n);
		}
		sim_trace(s, "clients idle: %d", sim_clients_idle(s));
	}
	if (!ok)
		sim_fail(s,
			 "no convergence: cluster did not settle within %llu units after healing",
			 (unsigned long long)(s->p.end - s->p.chaos_end));
	sim_clients_check(s);
	ops = sim_clients_ops(s, &reads);
	sim_stats.schedules++;
	sim_stats.steps += s->now;
	sim_stats.msgs += s->msgs_sent;
	sim_stats.dropped += s->msgs_dropped;
	sim_stats.writes += ops - reads;
	sim_stats.reads += reads;
	if (verbose)
		printf("seed %llu ok: t=%llu, %llu ops (%llu reads), %llu msgs (%llu dropped), "
		       "max applied %llu\n",
		       (unsigned long long)seed, (unsigned long long)s->now,
		       (unsigned long long)ops, (unsigned long long)reads,
		       (unsigned long long)s->msgs_sent, (unsigned long long)s->msgs_dropped,
		       (unsigned long long)s->max_applied);
	for (uint64_t id = 1; id <= SIM_MAX_NODES; id++) {
		if (s->nodes[id].up)
			node_stop(s, &s->nodes[id], false);
		disk_close(&s->nodes[id].disk);
		free(s->nodes[id].writes);
	}
	for (size_t i = 0; i < s->nnet; i++)
		free(s->net[i].bytes);
	free(s->net);
	sim_check_destroy(s->chk);
	sim_clients_destroy(s->cl);
	free(s);
	return 0;
}
