/*
 * `quorumfs get | put | del`: one key, or with --prefix a subtree (get
 * pages through it at one revision). put takes its value from the command
 * line or, given "-", from stdin; --ttl/--lease attach the key to a lease.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli_impl.h"

static void kv_print(const struct cli *c, const struct client_kv *kv, bool first)
{
	if (c->json) {
		printf("%s\n  {\"key\": ", first ? "" : ",");
		cli_json_str(kv->key);
		printf(", \"type\": \"%s\", \"mode\": %" PRIu32 ", \"create_revision\": %" PRIu64
		       ", \"mod_revision\": %" PRIu64 ", \"version\": %" PRIu64 ", \"value\": ",
		       cli_type_name(kv->type), kv->mode, kv->create_rev, kv->mod_rev, kv->version);
		cli_json_base64(kv->value, kv->value_len);
		putchar('}');
		return;
	}
	/* Directories are implied by the keys under them. */
	if (kv->type == STORE_DIR)
		return;
	printf("%s\n", kv->key);
	fwrite(kv->value, 1, kv->value_len, stdout);
	putchar('\n');
}

int cli_kv_get_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_GET,
			       .key = c->args[0],
			       .rev = c->rev,
			       .flags = c->prefix ? CLIENT_GET_PREFIX : 0,
			       .after = ""};
	char after[CLIENT_PROTO_KEY_MAX + 1];
	bool first = true;
	struct client_answer a;

	if (cli_key_check(c, r.key))
		return 1;
	for (;;) {
		if (cli_ask(c, &r, &a))
			return 1;
		if (!c->prefix && !c->json) {
			const struct client_kv *kv = &a.resp.kvs[0];

			if (a.resp.nkvs != 1 || kv->type == STORE_DIR) {
				client_answer_free(&a);
				return cli_fail(c, "%s (use --prefix to list it)",
						qfs_strerror(QFS_EISDIR));
			}
			fwrite(kv->value, 1, kv->value_len, stdout);
			client_answer_free(&a);
			return 0;
		}
		if (c->json && first)
			printf("{\"revision\": %" PRIu64 ", \"kvs\": [", a.resp.revision);
		for (size_t i = 0; i < a.resp.nkvs; i++, first = false)
			kv_print(c, &a.resp.kvs[i], first);
		if (!a.resp.more || a.resp.nkvs == 0)
			break;
		/* The next page, at the revision the first one was read at. */
		snprintf(after, sizeof(after), "%s", a.resp.kvs[a.resp.nkvs - 1].key);
		r.after = after;
		r.rev = a.resp.revision;
		client_answer_free(&a);
	}
	if (c->json) {
		if (first)
			printf("{\"revision\": %" PRIu64 ", \"kvs\": [", a.resp.revision);
		printf("%s]}\n", first ? "" : "\n");
	}
	client_answer_free(&a);
	return 0;
}

int cli_kv_write_run(struct cli *c)
{
	bool put = strcmp(c->cmd->name, "put") == 0;
	bool leased = put && (c->ttl_ms || c->lease_id);
	struct client_req r = {.type = leased ? CLIENT_REQ_PUT_LEASE
				       : put  ? CLIENT_REQ_PUT
					      : CLIENT_REQ_DEL,
			       .key = c->args[0],
			       .lease_id = c->lease_id,
			       .ttl_ms = c->ttl_ms};
	uint8_t *stdin_value = NULL;
	struct client_answer a;
	int rv;

	if (cli_key_check(c, r.key))
		return 1;
	if (put && strcmp(c->args[1], "-") == 0) {
		if (cli_stdin_read(c, &stdin_value, &r.value_len))
			return 1;
		r.value = stdin_value;
	} else if (put) {
		r.value = (const uint8_t *)c->args[1];
		r.value_len = strlen(c->args[1]);
	}
	r.flags = c->prefix ? CLIENT_DEL_PREFIX : 0;
	rv = cli_ask(c, &r, &a);
	free(stdin_value);
	if (rv)
		return 1;
	if (c->json && leased)
		printf("{\"revision\": %" PRIu64 ", \"lease\": \"%" PRIx64 "\"}\n", a.resp.revision,
		       a.resp.lease_id);
	else if (c->json)
		printf("{\"revision\": %" PRIu64 "}\n", a.resp.revision);
	else if (leased)
		printf("OK revision=%" PRIu64 " lease=%" PRIx64 "\n", a.resp.revision,
		       a.resp.lease_id);
	else
		printf("OK revision=%" PRIu64 "\n", a.resp.revision);
	client_answer_free(&a);
	return 0;
}
