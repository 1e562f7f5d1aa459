/*
 * `quorumfs user add|delete|list|grant-role|revoke-role`,
 * `role add|delete|list|grant-permission|revoke-permission` and
 * `auth enable|disable|status`: users and roles (fs/auth.h). Changes are
 * one AUTH_CHANGE request each; the lists and the status come from one
 * AUTH_LIST, whose users and roles are decoded here with auth_decode (the
 * member's bytes are checked like any others).
 */
#include <stdio.h>
#include <string.h>

#include "../common/errors.h"
#include "auth.h"
#include "cli_impl.h"

static const struct {
	const char *name, *sub;
	uint8_t op;
	const char *done; /* printed after the arguments */
} changes[] = {
    {"user", "add", AUTH_USER_ADD, "added"},
    {"user", "delete", AUTH_USER_DELETE, "deleted"},
    {"user", "grant-role", AUTH_USER_GRANT, "granted"},
    {"user", "revoke-role", AUTH_USER_REVOKE, "revoked"},
    {"role", "add", AUTH_ROLE_ADD, "added"},
    {"role", "delete", AUTH_ROLE_DELETE, "deleted"},
    {"role", "grant-permission", AUTH_ROLE_GRANT, "granted"},
    {"role", "revoke-permission", AUTH_ROLE_REVOKE, "revoked"},
    {"auth", "enable", AUTH_ENABLE, "auth enabled"},
    {"auth", "disable", AUTH_DISABLE, "auth disabled"},
};

const char cli_auth_details[] =
    "Users are the CNs of client certificates; roles grant read or readwrite on\n"
    "key prefixes (\"/a\" covers /a and /a/..., not /ab). The role root is built in\n"
    "and grants everything. With auth enabled, a client port answers a request\n"
    "only if its user may make it; without a certificate, only status. auth\n"
    "enable needs a user root with role root and must itself come from user root.\n"
    "Changes and lists need role root once auth is on.";

int cli_auth_change_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_AUTH_CHANGE, .name = "", .auth_arg = ""};
	const char *done = "";
	struct client_answer a;

	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		if (strcmp(changes[i].name, c->cmd->name) == 0 &&
		    strcmp(changes[i].sub, c->cmd->sub) == 0) {
			r.auth_op = changes[i].op;
			done = changes[i].done;
		}
	}
	if (c->cmd->nargs >= 1) {
		r.name = c->args[0];
		if (auth_name_check(r.name))
			return cli_fail(c, "%s names are 1 to %d printable ASCII characters",
					c->cmd->name, AUTH_NAME_MAX);
	}
	if (r.auth_op == AUTH_USER_GRANT || r.auth_op == AUTH_USER_REVOKE ||
	    r.auth_op == AUTH_ROLE_REVOKE)
		r.auth_arg = c->args[1];
	if (r.auth_op == AUTH_ROLE_GRANT) {
		if (auth_perm_parse(c->args[1], &r.auth_perm))
			return cli_fail(c, "the permission is read or readwrite, not '%s'",
					c->args[1]);
		r.auth_arg = c->args[2];
	}
	if ((r.auth_op == AUTH_ROLE_GRANT || r.auth_op == AUTH_ROLE_REVOKE) &&
	    cli_key_check(c, r.auth_arg))
		return 1;
	if (cli_ask(c, &r, &a))
		return 1;
	client_answer_free(&a);
	if (c->json) {
		printf("{\"ok\": true}\n");
		return 0;
	}
	for (int i = 0; i < c->cmd->nargs; i++)
		printf("%s ", c->args[i]);
	printf("%s\n", done);
	return 0;
}

static void user_list(const struct cli *c, const struct auth *au)
{
	if (c->json)
		putchar('[');
	for (uint32_t i = 0; i < au->nusers; i++) {
		const struct auth_user *u = &au->users[i];

		if (!c->json) {
			printf("%s roles=", u->name);
			for (uint32_t j = 0; j < u->nroles; j++)
				printf("%s%s", j ? "," : "", u->roles[j]);
			printf("%s\n", u->nroles ? "" : "-");
			continue;
		}
		printf("%s\n  {\"name\": ", i ? "," : "");
		cli_json_str(u->name);
		printf(", \"roles\": [");
		for (uint32_t j = 0; j < u->nroles; j++) {
			printf("%s", j ? ", " : "");
			cli_json_str(u->roles[j]);
		}
		printf("]}");
	}
	if (c->json)
		printf("%s]\n", au->nusers ? "\n" : "");
}

static void role_list(const struct cli *c, const struct auth *au)
{
	if (!c->json) {
		printf("root everything (built in)\n");
		for (uint32_t i = 0; i < au->nroles; i++) {
			const struct auth_role *r = &au->roles[i];

			if (r->nperms == 0)
				printf("%s -\n", r->name);
			for (uint32_t j = 0; j < r->nperms; j++)
				printf("%s %s %s\n", r->name, auth_perm_name(r->perms[j].perm),
				       r->perms[j].prefix);
		}
		return;
	}
	printf("[\n  {\"name\": \"root\", \"builtin\": true, \"permissions\": []}");
	for (uint32_t i = 0; i < au->nroles; i++) {
		const struct auth_role *r = &au->roles[i];

		printf(",\n  {\"name\": ");
		cli_json_str(r->name);
		printf(", \"builtin\": false, \"permissions\": [");
		for (uint32_t j = 0; j < r->nperms; j++) {
			printf("%s{\"permission\": \"%s\", \"prefix\": ", j ? ", " : "",
			       auth_perm_name(r->perms[j].perm));
			cli_json_str(r->perms[j].prefix);
			putchar('}');
		}
		printf("]}");
	}
	printf("\n]\n");
}

int cli_auth_list_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_AUTH_LIST};
	struct client_answer a;
	struct qreader rd;
	struct auth au;
	int rv;

	if (cli_ask(c, &r, &a))
		return 1;
	auth_init(&au);
	qreader_init(&rd, a.resp.auth, a.resp.auth_len);
	rv = auth_decode(&au, &rd);
	client_answer_free(&a);
	if (rv || rd.left)
		return cli_fail(c, "the member sent users and roles that do not decode (%s)",
				qfs_strerror(rv ? rv : QFS_EMSG));
	if (strcmp(c->cmd->name, "user") == 0)
		user_list(c, &au);
	else if (strcmp(c->cmd->name, "role") == 0)
		role_list(c, &au);
	else if (c->json)
		printf("{\"enabled\": %s, \"users\": %u, \"roles\": %u}\n",
		       au.enabled ? "true" : "false", au.nusers, au.nroles);
	else
		printf("auth %s (%u users, %u roles besides root)\n",
		       au.enabled ? "enabled" : "disabled", au.nusers, au.nroles);
	auth_close(&au);
	return 0;
}
