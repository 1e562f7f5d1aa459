/*
 * Startup: open the data dir and lock it, load the newest snapshot, replay
 * the WAL after it, and create the Raft core from what was found. A fresh
 * member (nothing on disk) bootstraps the cluster from --initial-cluster (or
 * alone), or with --join asks a running cluster to add it as a learner.
 * Errors go to stderr, naming the damaged file: the daemon does not start.
 * Runs in server_create(), before the loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../store/snapfile.h"
#include "cli.h"
#include "client_tls.h"
#include "datadir.h"
#include "image.h"
#include "server_impl.h"

/* ---- WAL replay ---------------------------------------------------------- */

struct replay {
	struct raft_entry *entries; /* after the snapshot, contiguous */
	size_t n, cap;
	uint64_t first; /* index of entries[0] */
	struct raft_hardstate hs;
};

static void replay_clear(struct replay *r)
{
	for (size_t i = 0; i < r->n; i++)
		raft_buf_unref(r->entries[i].buf);
	r->n = 0;
}

static int replay_record(void *arg, const struct wal_record *rec)
{
	struct replay *r = arg;
	struct raft_entry *e;

	if (rec->type == WAL_HARDSTATE) {
		r->hs = (struct raft_hardstate){rec->hs_term, rec->hs_vote, rec->hs_commit};
		return 0;
	}
	if (rec->type == WAL_SNAPSHOT) {
		replay_clear(r); /* the log restarts after it */
		r->first = rec->index + 1;
		return 0;
	}
	if (rec->len < 1 || rec->data[0] < RAFT_ENTRY_NORMAL || rec->data[0] > RAFT_ENTRY_NOOP)
		return QFS_ECORRUPT;
	if (rec->index < r->first) /* under a snapshot marker's floor */
		return 0;
	while (r->n && r->first + r->n > rec->index) /* replaces a suffix */
		raft_buf_unref(r->entries[--r->n].buf);
	if (r->n == 0)
		r->first = rec->index;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct raft_entry *grown = realloc(r->entries, cap * sizeof(*grown));

		if (!grown)
			return QFS_ENOMEM;
		r->entries = grown;
		r->cap = cap;
	}
	e = &r->entries[r->n];
	e->buf = raft_buf_new(rec->data + 1, rec->len - 1);
	if (!e->buf)
		return QFS_ENOMEM;
	e->index = rec->index;
	e->term = rec->term;
	e->type = rec->data[0];
	e->data = rec->len > 1 ? e->buf->data : NULL;
	e->len = rec->len - 1;
	r->n++;
	return 0;
}

/* ---- The data dir -------------------------------------------------------- */

int server_data_dir_open(struct server *srv)
{
	char err[4400];
	int rv = datadir_lock(srv->cfg->data_dir, &srv->lock_fd, err, sizeof(err));

	if (rv)
		fprintf(stderr, "quorumfs: %s\n", err);
	return rv ? QFS_EIO : 0;
}

/* ---- The first members --------------------------------------------------- */

/* --initial-cluster (or this member alone): the configuration to bootstrap
 * with, and the addresses it names merged into the book. */
static int initial_members(struct server *srv, struct raft_members *m)
{
	const struct config *cfg = srv->cfg;
	struct book b;
	char err[512];
	int rv = image_initial_members(
	    cfg->initial_cluster, cfg->name, cfg->listen_peer ? cfg->listen_peer : "",
	    cfg->listen_client ? cfg->listen_client : "", m, &b, err, sizeof(err));

	if (rv) {
		fprintf(stderr, "quorumfs: %s\n", err);
		return rv;
	}
	for (size_t i = 0; i < b.n && !rv; i++)
		rv = book_set(&srv->book, b.e[i].id, b.e[i].name, b.e[i].peer, b.e[i].client);
	return rv;
}

/* Where the members are, until the log and snapshots say so. */
static void seed_peer(void *arg, uint64_t id, const char *name, const char *peer,
		      const char *client)
{
	struct server *srv = arg;

	book_set(&srv->book, id, name, peer, client);
}

/* --join: ask the cluster to add this (empty) member as a learner; the
 * leader then sends it everything. Already a member (a restart before the
 * first entry arrived): carry on. With --client-cert, the request goes over
 * TLS with this member's client port certificate (its CN is the user the
 * other member logs) and --client-ca to check the other's. */
static int join(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct client_tls *tls = NULL;
	char err[512];
	int rv;

	if (cfg->client_cert && client_tls_create(cfg->client_ca, cfg->client_cert, cfg->client_key,
						  &tls, err, sizeof(err))) {
		fprintf(stderr, "quorumfs: --join %s: %s\n", cfg->join, err);
		return QFS_EINVAL;
	}
	rv = cli_member_add_learner(cfg->join, tls, cfg->name, cfg->listen_peer,
				    cfg->listen_client ? cfg->listen_client : "",
				    cfg->request_timeout_ms * 2, err, sizeof(err));
	if (rv == QFS_EEXIST) {
		LOG_INFO("--join: %s is a member already", cfg->name);
	} else if (rv) {
		fprintf(stderr, "quorumfs: --join %s: %s\n", cfg->join,
			err[0] ? err : qfs_strerror(rv));
		goto out;
	} else {
		LOG_INFO("--join: added to the cluster at %s as a learner", cfg->join);
	}
	rv = cli_member_peers(cfg->join, tls, cfg->request_timeout_ms, seed_peer, srv, err,
			      sizeof(err));
	if (rv)
		fprintf(stderr, "quorumfs: --join %s: cannot list the members: %s\n", cfg->join,
			err[0] ? err : qfs_strerror(rv));
out:
	client_tls_destroy(tls);
	return rv;
}

/* ---- Recovery ------------------------------------------------------------ */

static void raft_opts(struct server *srv, struct raft_options *o)
{
	raft_options_default(o, srv->member_id);
	o->heartbeat_ticks = 1;
	o->election_ticks = (unsigned)(srv->cfg->election_ms / srv->cfg->heartbeat_ms);
	o->rand_seed = srv->member_id ^ (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	o->max_msg_bytes = srv->cfg->max_value_bytes + 4096;
	o->stamp_offset = ENTRY_TIME_OFFSET; /* entry times (mtime, leases) are leader time */
	o->snapshot_chunk = 1u << 20;
}

int server_recover(struct server *srv, struct wal **out)
{
	char errmsg[1024] = "";
	struct replay r = {.first = 1};
	struct raft_snapshot snap = {0};
	struct raft_restore rs = {0};
	struct raft_options o;
	struct raft_members init;
	struct wal *wal = NULL;
	uint8_t *image = NULL;
	size_t len = 0;
	bool fresh;
	int rv;

	rv = snapfile_load(srv->cfg->data_dir, &snap.index, &snap.term, &image, &len, errmsg,
			   sizeof(errmsg));
	if (rv == 0) {
		rv = server_image_load(srv, image, len, &snap.members);
		if (rv != 0) {
			fprintf(stderr, "quorumfs: snapshot at index %llu in %s/snap: %s\n",
				(unsigned long long)snap.index, srv->cfg->data_dir,
				qfs_strerror(rv));
			goto out;
		}
		snap.data = image;
		snap.len = len;
		srv->snapshot_index = snap.index;
		r.first = snap.index + 1;
	} else if (rv != QFS_ENOENT) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		goto out;
	}
	rv = wal_open(srv->cfg->data_dir, snap.index, replay_record, &r, &wal, errmsg,
		      sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		goto out;
	}
	if (r.n && r.first != snap.index + 1) {
		fprintf(stderr,
			"quorumfs: %s/wal: the log starts at entry %llu but the snapshot "
			"ends at %llu; refusing to start\n",
			srv->cfg->data_dir, (unsigned long long)r.first,
			(unsigned long long)snap.index);
		rv = QFS_ECORRUPT;
		goto out;
	}
	fresh = !snap.index && !r.n && !r.hs.term;
	rs = (struct raft_restore){r.hs, snap.index ? &snap : NULL, r.entries, r.n};
	raft_opts(srv, &o);
	rv = raft_create(&o, &rs, &srv->raft);
	if (rv == QFS_EINVAL) {
		/* The WAL read fine but does not fit: e.g. a snapshot without
		 * the hard state that must come with it. */
		fprintf(stderr,
			"quorumfs: %s: the snapshot (index %llu, term %llu), the log and the hard "
			"state (term %llu) do not fit together; refusing to start (see quorumfs "
			"check)\n",
			srv->cfg->data_dir, (unsigned long long)snap.index,
			(unsigned long long)snap.term, (unsigned long long)r.hs.term);
		rv = QFS_ECORRUPT;
	}
	if (rv)
		goto out;
	if (fresh && !srv->cfg->join) {
		if ((rv = initial_members(srv, &init)) || (rv = raft_bootstrap(srv->raft, &init)))
			goto out;
	} else if (fresh && (rv = join(srv))) {
		goto out;
	} else if (!fresh && !book_find(&srv->book, srv->member_id) &&
		   (rv = initial_members(srv, &init))) { /* addresses until published */
		goto out;
	}
	LOG_INFO("recovered: snapshot index %llu, %zu log entries, term %llu",
		 (unsigned long long)snap.index, r.n, (unsigned long long)r.hs.term);
	*out = wal;
	wal = NULL;
out:
	if (wal)
		wal_close(wal);
	replay_clear(&r);
	free(r.entries);
	free(image);
	return rv;
}
