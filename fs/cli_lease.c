/*
 * `quorumfs lease grant | keepalive | revoke | list`, and the TTL and lease
 * id syntax that put --ttl/--lease share. keepalive runs until SIGINT or
 * SIGTERM, renewing every ttl/3.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli_impl.h"

/* Seconds ("10", "2.5") into milliseconds: > 0 and within what the store
 * takes. Whether it is long enough is the member's to say (1.5 x its
 * election timeout, which the CLI cannot know). */
int cli_lease_ttl_parse(const char *s, int64_t *ms)
{
	char *end;
	double sec;

	errno = 0;
	sec = strtod(s, &end);
	if (end == s || *end || errno || !(sec > 0) || sec * 1000 > (double)STORE_LEASE_TTL_MAX_MS)
		return -1;
	*ms = (int64_t)(sec * 1000 + 0.5);
	if (*ms == 0)
		*ms = 1; /* below any minimum: the member says which */
	return 0;
}

/* A lease id as the CLI, getfattr and /.quorumfs/leases print it: hex. */
int cli_lease_id_parse(const char *s, uint64_t *id)
{
	char *end;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
		return -1;
	errno = 0;
	*id = strtoull(s, &end, 16);
	return errno || *end || *id == 0 ? -1 : 0;
}

/* The usage error for a bad lease id argument. */
static int bad_lease_arg(const struct cli *c)
{
	fprintf(stderr, "quorumfs: %s: want a lease id in hex (as lease grant prints it)\n",
		c->what);
	return 2;
}

static void lease_print(const struct cli *c, const char *verb, uint64_t id, int64_t ttl_ms)
{
	char ttl[32];

	client_proto_secs_str(ttl_ms, ttl, sizeof(ttl));
	if (c->json)
		printf("{\"id\": \"%" PRIx64 "\", \"ttl\": %s}\n", id, ttl);
	else
		printf("lease %" PRIx64 " %s, ttl %s\n", id, verb, ttl);
}

int cli_lease_grant_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_GRANT};
	struct client_answer a;

	if (cli_lease_ttl_parse(c->args[0], &r.ttl_ms)) {
		fprintf(stderr, "quorumfs: %s: TTL wants seconds above 0 (decimals allowed)\n",
			c->what);
		return 2;
	}
	if (cli_ask(c, &r, &a))
		return 1;
	lease_print(c, "granted", a.resp.lease_id, a.resp.ttl_ms);
	client_answer_free(&a);
	return 0;
}

int cli_lease_revoke_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_REVOKE};
	struct client_answer a;

	if (cli_lease_id_parse(c->args[0], &r.lease_id))
		return bad_lease_arg(c);
	if (cli_ask(c, &r, &a))
		return 1;
	if (c->json)
		printf("{\"id\": \"%" PRIx64 "\", \"revision\": %" PRIu64 "}\n", r.lease_id,
		       a.resp.revision);
	else
		printf("lease %" PRIx64 " revoked revision=%" PRIu64 "\n", r.lease_id,
		       a.resp.revision);
	client_answer_free(&a);
	return 0;
}

static void lease_list_print(const struct cli *c, const struct client_lease *l, bool first)
{
	/* Whole seconds rounded up, as /.quorumfs/leases/ID and getfattr show. */
	int64_t rem = (l->remaining_ms + 999) / 1000;
	char ttl[32];

	client_proto_secs_str(l->ttl_ms, ttl, sizeof(ttl));
	if (!c->json) {
		printf("%" PRIx64 " ttl=%s remaining=%" PRId64 " keys=%" PRIu64 "\n", l->id, ttl,
		       rem, l->nkeys);
		return;
	}
	printf("%s\n  {\"id\": \"%" PRIx64 "\", \"ttl\": %s, \"remaining\": %" PRId64
	       ", \"remaining_ms\": %" PRId64 ", \"nkeys\": %" PRIu64 ", \"keys\": [",
	       first ? "" : ",", l->id, ttl, rem, l->remaining_ms, l->nkeys);
	for (size_t i = 0; i < l->nkeys_listed; i++) {
		if (i)
			fputs(", ", stdout);
		cli_json_str(l->keys[i]);
	}
	putchar(']');
	if (l->nkeys_listed < l->nkeys)
		fputs(", \"keys_truncated\": true", stdout);
	putchar('}');
}

int cli_lease_list_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_LIST,
			       .flags = c->json ? CLIENT_LEASE_LIST_KEYS : 0};
	struct client_answer a;
	bool any = false, more = true;

	while (more) {
		if (cli_ask(c, &r, &a))
			return 1;
		if (c->json && r.lease_id == 0)
			printf("{\"revision\": %" PRIu64 ", \"leases\": [", a.resp.revision);
		for (size_t i = 0; i < a.resp.nleases; i++, any = true)
			lease_list_print(c, &a.resp.leases[i], !any);
		/* The next page: each is its own read, leases may come and go. */
		more = a.resp.more && a.resp.nleases > 0;
		if (more)
			r.lease_id = a.resp.leases[a.resp.nleases - 1].id;
		client_answer_free(&a);
	}
	if (c->json)
		printf("%s]}\n", any ? "\n" : "");
	return 0;
}

static volatile sig_atomic_t keepalive_stop;

static void on_keepalive_signal(int sig)
{
	(void)sig;
	keepalive_stop = 1;
}

/* Sleeps until deadline (CLOCK_MONOTONIC ms) or a stop signal. */
static void keepalive_sleep(uint64_t until)
{
	for (;;) {
		uint64_t now = client_now_ms();

		if (keepalive_stop || now >= until)
			return;
		/* EINTR from the signal ends the poll early: the loop sees it. */
		poll(NULL, 0, (int)(until - now > 1000 ? 1000 : until - now));
	}
}

/*
 * Renews now, then every ttl/3 (counted from when each renewal was sent,
 * so answers that take a while do not make it drift). A renewal that gets
 * no answer, or a member that cannot commit it now, is retried soon; only
 * when a whole ttl passed without one does the lease count as lost.
 * SIGINT/SIGTERM end it with status 0 (the lease then runs its course).
 */
int cli_lease_keepalive_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_RENEW};
	struct sigaction sa = {.sa_handler = on_keepalive_signal}, old_int, old_term;
	uint64_t last_ok = 0, ttl_ms = 0;
	char err[CLIENT_ERR_MAX], ttl[32];
	int rv = 0;

	if (cli_lease_id_parse(c->args[0], &r.lease_id))
		return bad_lease_arg(c);
	keepalive_stop = 0;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the signal must cut a sleep short. */
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	while (!keepalive_stop) {
		uint64_t sent = client_now_ms(), retry;
		struct client_answer a;

		if (client_request(&c->eps, &r, NULL, &a, err) == 0) {
			int status = a.resp.status;

			if (status == 0) {
				last_ok = sent;
				ttl_ms = a.resp.ttl_ms > 0 ? (uint64_t)a.resp.ttl_ms : 1;
				lease_print(c, "renewed", r.lease_id, a.resp.ttl_ms);
				client_answer_free(&a);
				if (fflush(stdout) != 0 || c->once)
					break;
				keepalive_sleep(sent + (ttl_ms / 3 ? ttl_ms / 3 : 1));
				continue;
			}
			if (status != QFS_ETIMEDOUT && !client_ask_elsewhere(status)) {
				/* The lease is gone (or the member refuses for
				 * good): renewing again cannot help. */
				rv = cli_fail_resp(c, &a.resp);
				client_answer_free(&a);
				break;
			}
			snprintf(err, sizeof(err), "%s", a.resp.msg);
			client_answer_free(&a);
		}
		if (!last_ok || c->once) {
			rv = cli_fail(c, "%s", err);
			break;
		}
		if (client_now_ms() - last_ok >= ttl_ms) {
			rv = cli_fail(
			    c,
			    "no renewal for %s s, the lease's ttl: it has probably expired "
			    "(last error: %s)",
			    client_proto_secs_str((int64_t)(client_now_ms() - last_ok), ttl,
						  sizeof(ttl)),
			    err);
			break;
		}
		fprintf(stderr, "quorumfs: %s: renewal failed, retrying: %s\n", c->what, err);
		retry = ttl_ms / 10 < 1000 ? ttl_ms / 10 : 1000;
		keepalive_sleep(client_now_ms() + (retry ? retry : 1));
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	return rv;
}

const char cli_lease_keepalive_details[] =
    "Renews the lease at once and then every ttl/3 until interrupted (Ctrl-C or\n"
    "SIGTERM: exit 0; the lease then expires ttl seconds after the last renewal),\n"
    "printing one line per renewal: lease ID renewed, ttl T. A renewal that fails\n"
    "for a while (no leader, a member down) is retried on the other endpoints;\n"
    "once a whole ttl passed without one, or when the lease no longer exists\n"
    "(expired or revoked), it exits 1.\n";
