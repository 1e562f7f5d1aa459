/*
 * `quorumfs status`: one row per member (role, term, indexes, revision,
 * health). Given one endpoint, the other members come from its member list
 * and each is asked at its own client address; given several, each is
 * asked in turn. Exits 1 when any member did not answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_impl.h"

struct row {
	char name[CLIENT_PROTO_NAME_MAX + 1];
	char endpoint[CLIENT_PROTO_ADDR_MAX + 1];
	struct client_answer a; /* a.resp.st when answered */
	bool answered;
	const char *health; /* when not answered: "unreachable" or "unknown" */
	char err[CLIENT_ERR_MAX];
};

static void row_query(const struct cli *c, struct row *row)
{
	struct client_req r = {.type = CLIENT_REQ_STATUS};

	if (client_request(&c->eps, &r, row->endpoint, &row->a, row->err) != 0) {
		row->health = "unreachable";
		return;
	}
	if (row->a.resp.status) {
		snprintf(row->err, CLIENT_ERR_MAX, "%s", row->a.resp.msg);
		row->health = "unreachable";
		client_answer_free(&row->a);
		return;
	}
	row->answered = true;
	snprintf(row->name, sizeof(row->name), "%s", row->a.resp.st.name);
}

static void row_print(const struct cli *c, const struct row *row, bool first)
{
	const struct client_status *st = &row->a.resp.st;
	const char *health = row->answered ? (st->leader_id ? "ok" : "no-leader") : row->health;
	char size[32];

	if (c->json) {
		printf("%s\n  {\"name\": ", first ? "" : ",");
		cli_json_str(row->name);
		printf(", \"endpoint\": ");
		cli_json_str(row->endpoint);
		if (row->answered) {
			printf(", \"id\": \"%016" PRIx64 "\", \"cluster_id\": \"%016" PRIx64
			       "\", \"role\": ",
			       st->member_id, st->cluster_id);
			cli_json_str(st->role);
			printf(", \"term\": %" PRIu64 ", \"commit_index\": %" PRIu64
			       ", \"applied_index\": %" PRIu64 ", \"leader\": ",
			       st->term, st->commit_index, st->applied_index);
			cli_json_str(st->leader_name);
			printf(", \"revision\": %" PRIu64 ", \"compacted_revision\": %" PRIu64
			       ", \"db_size\": %" PRIu64 ", \"quota_bytes\": %" PRIu64
			       ", \"keys\": %" PRIu64 ", \"snapshot_index\": %" PRIu64,
			       st->revision, st->compacted_revision, st->db_size, st->quota_bytes,
			       st->keys, st->snapshot_index);
		}
		printf(", \"health\": ");
		cli_json_str(health);
		if (!row->answered) {
			printf(", \"error\": ");
			cli_json_str(row->err);
		}
		putchar('}');
		return;
	}
	if (!row->answered) {
		printf("%s endpoint=%s health=%s error=\"%s\"\n", row->name[0] ? row->name : "?",
		       row->endpoint[0] ? row->endpoint : "-", health, row->err);
		return;
	}
	printf("%s id=%016" PRIx64 " role=%s term=%" PRIu64 " commit=%" PRIu64 " applied=%" PRIu64
	       " revision=%" PRIu64 " db=%s endpoint=%s health=%s\n",
	       row->name, st->member_id, st->role, st->term, st->commit_index, st->applied_index,
	       st->revision, cli_human_size(st->db_size, size, sizeof(size)), row->endpoint,
	       health);
}

/* With one endpoint, the rows of the other members come from its member
 * list, in its order: each is asked at its own client address. */
static size_t status_rows_from_members(const struct cli *c, struct row **rows)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_LIST};
	struct client_answer list;
	struct row *out, *self = *rows;
	bool self_listed = false;
	char err[CLIENT_ERR_MAX];
	size_t n = 0;

	if (client_request(&c->eps, &r, self->endpoint, &list, err) != 0)
		return 1;
	if (list.resp.status != 0 || !(out = calloc(list.resp.nmembers + 1, sizeof(*out)))) {
		client_answer_free(&list);
		return 1;
	}
	for (size_t i = 0; i < list.resp.nmembers; i++) {
		const struct client_member *m = &list.resp.members[i];
		struct row *row = &out[n++];

		if (strcmp(m->name, self->name) == 0) {
			*row = *self;
			self_listed = true;
			continue;
		}
		snprintf(row->endpoint, sizeof(row->endpoint), "%s", m->client_addr);
		if (!m->client_addr[0]) {
			row->health = "unknown";
			snprintf(row->err, CLIENT_ERR_MAX, "no client address (--listen-client)");
		} else {
			row_query(c, row);
		}
		/* The name the member list knows it by, whatever answered. */
		snprintf(row->name, sizeof(row->name), "%s", m->name);
	}
	/* A member just removed still answers for itself. */
	if (!self_listed)
		out[n++] = *self;
	client_answer_free(&list);
	free(*rows);
	*rows = out;
	return n;
}

int cli_status_run(struct cli *c)
{
	struct row *rows = calloc(c->eps.n, sizeof(*rows));
	size_t n = c->eps.n, failed = 0;
	int rv = 0;

	if (!rows)
		return cli_fail(c, "out of memory");
	for (size_t i = 0; i < n; i++) {
		snprintf(rows[i].endpoint, sizeof(rows[i].endpoint), "%s", c->eps.ep[i]);
		row_query(c, &rows[i]);
	}
	if (n == 1 && !rows[0].answered) {
		rv = cli_fail(c, "%s", rows[0].err);
		goto out;
	}
	if (n == 1)
		n = status_rows_from_members(c, &rows);
	if (c->json)
		putchar('[');
	for (size_t i = 0; i < n; i++) {
		row_print(c, &rows[i], i == 0);
		if (!rows[i].answered && strcmp(rows[i].health, "unreachable") == 0)
			failed++;
	}
	if (c->json)
		printf("\n]\n");
	if (failed)
		rv = cli_fail(c, "%zu of %zu members did not answer", failed, n);
out:
	for (size_t i = 0; i < n; i++)
		client_answer_free(&rows[i].a);
	free(rows);
	return rv;
}
