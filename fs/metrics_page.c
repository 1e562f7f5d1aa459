/*
 * The Prometheus page of a member (/.quorumfs/metrics and, with
 * --metrics-listen, GET /metrics): its counters and histograms
 * (common/metrics.h), then gauges read from the live state.
 */
#include <stdio.h>

#include "../common/metrics.h"
#include "fs.h"
#include "metrics_page.h"

static int count_lease(void *arg, const struct store_lease *l)
{
	(void)l;
	(*(size_t *)arg)++;
	return 0;
}

void metrics_page(struct server *srv, struct qbuf *out)
{
	struct server_member m[SERVER_MEMBERS_MAX];
	size_t n = server_members(srv, m, SERVER_MEMBERS_MAX), voters = 0, leases = 0;
	struct server_status st;
	char labels[SERVER_NAME_MAX + 16];

	metrics_render(server_metrics(srv), out);
	server_status(srv, &st);
	server_rdlock(srv);
	store_lease_list(server_store(srv), count_lease, &leases);
	server_unlock(srv);
	for (size_t i = 0; i < n; i++)
		voters += m[i].voter;

	metrics_gauge(out, "server_has_leader", "1 if a leader is known, else 0.", NULL,
		      st.leader_id != 0);
	metrics_gauge(out, "server_is_leader", "1 if this member is the leader.", NULL,
		      st.leader_id != 0 && st.leader_id == st.member_id);
	metrics_gauge(out, "server_is_learner", "1 if this member is a learner (non-voting).",
		      NULL, st.role[0] == 'l' && st.role[2] == 'a'); /* "learner", not "leader" */
	metrics_gauge(out, "server_term", "The Raft term this member is in.", NULL, (double)st.term);
	metrics_gauge(out, "server_commit_index", "The highest log index known committed.", NULL,
		      (double)st.commit_index);
	metrics_gauge(out, "server_applied_index", "The highest log index applied to the store.",
		      NULL, (double)st.applied_index);
	metrics_gauge(out, "server_snapshot_index", "The log index of the latest snapshot.", NULL,
		      (double)st.snapshot_index);
	metrics_gauge(out, "cluster_members", "Members in the configuration, by kind.",
		      "kind=\"voter\"", (double)voters);
	metrics_gauge(out, "cluster_members", NULL, "kind=\"learner\"", (double)(n - voters));
	metrics_gauge(out, "mvcc_revision", "The store's current revision.", NULL,
		      (double)st.revision);
	metrics_gauge(out, "mvcc_compacted_revision", "History before this revision is dropped.",
		      NULL, (double)st.compacted_revision);
	metrics_gauge(out, "mvcc_keys_total", "Keys (files, directories, symlinks) in the store.",
		      NULL, (double)st.keys);
	metrics_gauge(out, "mvcc_db_total_size_in_bytes", "Bytes the store counts against its quota.",
		      NULL, (double)st.db_size);
	metrics_gauge(out, "server_quota_backend_bytes", "--quota-bytes.", NULL,
		      (double)st.quota_bytes);
	metrics_gauge(out, "lease_active", "Leases granted and not yet revoked or expired.", NULL,
		      (double)leases);
	for (size_t i = 0, shown = 0; i < n; i++) {
		if (m[i].id == st.member_id)
			continue;
		snprintf(labels, sizeof(labels), "peer=\"%s\"", m[i].name);
		metrics_gauge(out, "network_peer_connected",
			      shown++ ? NULL : "1 while this member is connected to the peer.", labels,
			      m[i].connected);
	}
	for (size_t i = 0, shown = 0; i < n; i++) {
		if (m[i].id == st.member_id)
			continue;
		snprintf(labels, sizeof(labels), "peer=\"%s\"", m[i].name);
		metrics_gauge(out, "network_peer_last_round_trip_seconds",
			      shown++ ? NULL
				      : "The last heartbeat round trip to the peer, measured while "
					"leader (0: none yet).",
			      labels, (double)m[i].rtt_ns / 1e9);
	}
}
