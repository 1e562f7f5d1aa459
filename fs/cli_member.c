/*
 * `quorumfs member list|add|remove|promote` and `leader transfer`, and the
 * two requests `serve --join` makes before its member's loop runs
 * (cli_member_add_learner, cli_member_peers in cli.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../common/errors.h"
#include "cli.h"
#include "cli_impl.h"

int cli_member_list_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_LIST, .flags = CLIENT_MEMBERS_LINEARIZABLE};
	struct client_answer a;

	if (cli_ask(c, &r, &a))
		return 1;
	if (c->json)
		putchar('[');
	for (size_t i = 0; i < a.resp.nmembers; i++) {
		const struct client_member *m = &a.resp.members[i];

		if (!c->json) {
			printf("%s id=%016" PRIx64 " role=%s peer=%s client=%s%s\n", m->name, m->id,
			       m->voter ? "voter" : "learner", m->peer_addr,
			       m->client_addr[0] ? m->client_addr : "-",
			       m->leader ? " leader=true" : "");
			continue;
		}
		printf("%s\n  {\"name\": ", i ? "," : "");
		cli_json_str(m->name);
		printf(", \"id\": \"%016" PRIx64 "\", \"role\": \"%s\", \"peer\": ", m->id,
		       m->voter ? "voter" : "learner");
		cli_json_str(m->peer_addr);
		printf(", \"client\": ");
		cli_json_str(m->client_addr);
		printf(", \"leader\": %s}", m->leader ? "true" : "false");
	}
	if (c->json)
		printf("\n]\n");
	client_answer_free(&a);
	return 0;
}

int cli_member_change_run(struct cli *c)
{
	static const struct {
		const char *name, *sub;
		uint8_t type;
		const char *done;
	} ops[] = {
	    {"member", "add", CLIENT_REQ_MEMBER_ADD, "added"},
	    {"member", "remove", CLIENT_REQ_MEMBER_REMOVE, "removed"},
	    {"member", "promote", CLIENT_REQ_MEMBER_PROMOTE, "promoted to voter"},
	    {"leader", "transfer", CLIENT_REQ_LEADER_TRANSFER, "is now the leader"},
	};
	struct client_req r = {.name = c->args[0]};
	const char *done = "";
	struct client_answer a;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(ops[i].name, c->cmd->name) == 0 &&
		    strcmp(ops[i].sub, c->cmd->sub) == 0) {
			r.type = ops[i].type;
			done = ops[i].done;
		}
	}
	if (strlen(c->args[0]) > CLIENT_PROTO_NAME_MAX)
		return cli_fail(c, "member names are at most %d bytes", CLIENT_PROTO_NAME_MAX);
	if (r.type == CLIENT_REQ_MEMBER_ADD) {
		r.peer_addr = c->args[1];
		r.client_addr = c->client_addr ? c->client_addr : "";
		r.learner = !c->voter;
		if (strlen(r.peer_addr) > CLIENT_PROTO_ADDR_MAX ||
		    strlen(r.client_addr) > CLIENT_PROTO_ADDR_MAX)
			return cli_fail(c, "addresses are at most %d bytes", CLIENT_PROTO_ADDR_MAX);
		if (r.learner)
			done = "added as a learner (promote it once it has caught up)";
		else
			done = "added as a voter";
	}
	if (cli_ask(c, &r, &a))
		return 1;
	if (c->json) {
		printf("{\"member\": ");
		cli_json_str(c->args[0]);
		printf(", \"ok\": true}\n");
	} else
		printf("%s %s\n", c->args[0], done);
	client_answer_free(&a);
	return 0;
}

/* One request for the daemon itself (serve --join): the status, with the
 * member's message or a connection error in err. On 0, *a holds the answer
 * (client_answer_free). */
static int daemon_request(const char *endpoints, struct client_tls *tls, uint64_t timeout_ms,
			  const struct client_req *r, struct client_answer *a, char *err,
			  size_t errlen)
{
	struct cli c = {.eps.timeout_ms = timeout_ms, .eps.tls = tls};
	char e[CLIENT_ERR_MAX];
	int rv;

	if (client_endpoints_set(&c.eps, endpoints)) {
		snprintf(err, errlen, "bad endpoint list '%s'", endpoints);
		client_endpoints_close(&c.eps);
		return QFS_EINVAL;
	}
	if (client_request(&c.eps, r, NULL, a, e) != 0) {
		snprintf(err, errlen, "%s", e);
		rv = QFS_EIO;
	} else {
		rv = a->resp.status;
		snprintf(err, errlen, "%s", rv ? a->resp.msg : "");
		if (rv)
			client_answer_free(a);
	}
	client_endpoints_close(&c.eps);
	return rv;
}

int cli_member_add_learner(const char *endpoints, struct client_tls *tls, const char *name,
			   const char *peer_addr, const char *client_addr, uint64_t timeout_ms,
			   char *err, size_t errlen)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_ADD,
			       .name = name,
			       .peer_addr = peer_addr,
			       .client_addr = client_addr ? client_addr : "",
			       .learner = true};
	struct client_answer a;
	int rv = daemon_request(endpoints, tls, timeout_ms, &r, &a, err, errlen);

	if (rv == 0)
		client_answer_free(&a);
	return rv;
}

int cli_member_peers(const char *endpoints, struct client_tls *tls, uint64_t timeout_ms,
		     void (*cb)(void *arg, uint64_t id, const char *name, const char *peer,
				const char *client),
		     void *arg, char *err, size_t errlen)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_LIST};
	struct client_answer a;
	int rv = daemon_request(endpoints, tls, timeout_ms, &r, &a, err, errlen);

	if (rv)
		return rv;
	for (size_t i = 0; i < a.resp.nmembers; i++)
		cb(arg, a.resp.members[i].id, a.resp.members[i].name, a.resp.members[i].peer_addr,
		   a.resp.members[i].client_addr);
	client_answer_free(&a);
	return 0;
}
