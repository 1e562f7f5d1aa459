/*
 * `quorumfs status | member ... | leader transfer | get | put | del | watch |
 * lease grant/keepalive/revoke/list`: parse the command line, send
 * client_proto.h requests through client.h, print the answers (or, for
 * watch, the event stream; for keepalive, one line per renewal).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli.h"
#include "client.h"
#include "client_proto.h"

#define DEFAULT_ENDPOINT "127.0.0.1:2379"
#define DEFAULT_TIMEOUT_MS 6000 /* above the members' default request timeout */

/* Flags a command accepts besides the global ones. */
enum {
	FL_PREFIX = 0x1,
	FL_REV = 0x2,
	FL_LEARNER = 0x4,
	FL_VOTER = 0x8,
	FL_CLIENT = 0x10,
	FL_START = 0x20, /* --rev for watch: where to start */
	FL_TTL = 0x40,
	FL_LEASE = 0x80,
	FL_ONCE = 0x100,
};

struct cli;

struct command {
	const char *name, *sub;
	int nargs;
	unsigned flags;
	const char *args_usage, *help;
	int (*run)(struct cli *c);
};

struct cli {
	const struct command *cmd;
	char what[160]; /* "put /a": how errors start */
	struct client_endpoints eps;
	bool json;
	bool prefix, learner, voter;
	uint64_t rev;
	const char *client_addr;
	const char *args[2];
	int64_t ttl_ms;	   /* put --ttl */
	uint64_t lease_id; /* put --lease */
	bool once;	   /* lease keepalive --once */
};

static int fail(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const struct cli *c, const char *fmt, ...)
{
	char msg[CLIENT_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "quorumfs: %s: %s\n", c->what, msg);
	return 1;
}

/* The error line for a member's refusal. */
static int fail_resp(const struct cli *c, const struct client_resp *r)
{
	if (r->status == QFS_ENOTLEADER && r->leader_name[0] && !r->leader_client[0])
		return fail(c, "%s (the leader is %s, which has no client address)", r->msg,
			    r->leader_name);
	if (r->status == QFS_ENOTLEADER && !r->leader_name[0])
		return fail(c, "%s, and no leader is known (no quorum?)", r->msg);
	return fail(c, "%s", r->msg[0] ? r->msg : qfs_strerror(r->status));
}

/* request() and the error line in one: 0 with a successful answer, or 1. */
static int ask(const struct cli *c, const struct client_req *r, struct client_answer *a)
{
	char err[CLIENT_ERR_MAX];

	if (client_request(&c->eps, r, NULL, a, err) != 0)
		return fail(c, "%s", err);
	if (a->resp.status != 0) {
		fail_resp(c, &a->resp);
		client_answer_free(a);
		return 1;
	}
	return 0;
}

/* ---- output helpers ---------------------------------------------------------------- */

static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", stdout);
		else if (*p == '\t')
			fputs("\\t", stdout);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void base64(const uint8_t *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	putchar('"');
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		putchar(tab[v >> 18 & 63]);
		putchar(tab[v >> 12 & 63]);
		putchar(i + 1 < n ? tab[v >> 6 & 63] : '=');
		putchar(i + 2 < n ? tab[v & 63] : '=');
	}
	putchar('"');
}

static const char *human_size(uint64_t v, char *buf, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 "B", v);
	else
		snprintf(buf, len, "%.1f%s", d, units[u]);
	return buf;
}

static const char *type_name(uint8_t t)
{
	return t == STORE_DIR ? "dir" : t == STORE_SYMLINK ? "symlink" : "file";
}

/* ---- status ------------------------------------------------------------------------ */

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
		json_str(row->name);
		printf(", \"endpoint\": ");
		json_str(row->endpoint);
		if (row->answered) {
			printf(", \"id\": \"%016" PRIx64 "\", \"cluster_id\": \"%016" PRIx64
			       "\", \"role\": ",
			       st->member_id, st->cluster_id);
			json_str(st->role);
			printf(", \"term\": %" PRIu64 ", \"commit_index\": %" PRIu64
			       ", \"applied_index\": %" PRIu64 ", \"leader\": ",
			       st->term, st->commit_index, st->applied_index);
			json_str(st->leader_name);
			printf(", \"revision\": %" PRIu64 ", \"compacted_revision\": %" PRIu64
			       ", \"db_size\": %" PRIu64 ", \"quota_bytes\": %" PRIu64
			       ", \"keys\": %" PRIu64 ", \"snapshot_index\": %" PRIu64,
			       st->revision, st->compacted_revision, st->db_size, st->quota_bytes,
			       st->keys, st->snapshot_index);
		}
		printf(", \"health\": ");
		json_str(health);
		if (!row->answered) {
			printf(", \"error\": ");
			json_str(row->err);
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
	       st->revision, human_size(st->db_size, size, sizeof(size)), row->endpoint, health);
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

static int run_status(struct cli *c)
{
	struct row *rows = calloc(c->eps.n, sizeof(*rows));
	size_t n = c->eps.n, failed = 0;
	int rv = 0;

	if (!rows)
		return fail(c, "out of memory");
	for (size_t i = 0; i < n; i++) {
		snprintf(rows[i].endpoint, sizeof(rows[i].endpoint), "%s", c->eps.ep[i]);
		row_query(c, &rows[i]);
	}
	if (n == 1 && !rows[0].answered) {
		rv = fail(c, "%s", rows[0].err);
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
		rv = fail(c, "%zu of %zu members did not answer", failed, n);
out:
	for (size_t i = 0; i < n; i++)
		client_answer_free(&rows[i].a);
	free(rows);
	return rv;
}

/* ---- members ------------------------------------------------------------------------ */

static int run_member_list(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_LIST};
	struct client_answer a;

	if (ask(c, &r, &a))
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
		json_str(m->name);
		printf(", \"id\": \"%016" PRIx64 "\", \"role\": \"%s\", \"peer\": ", m->id,
		       m->voter ? "voter" : "learner");
		json_str(m->peer_addr);
		printf(", \"client\": ");
		json_str(m->client_addr);
		printf(", \"leader\": %s}", m->leader ? "true" : "false");
	}
	if (c->json)
		printf("\n]\n");
	client_answer_free(&a);
	return 0;
}

static int run_member_change(struct cli *c)
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
		return fail(c, "member names are at most %d bytes", CLIENT_PROTO_NAME_MAX);
	if (r.type == CLIENT_REQ_MEMBER_ADD) {
		r.peer_addr = c->args[1];
		r.client_addr = c->client_addr ? c->client_addr : "";
		r.learner = !c->voter;
		if (strlen(r.peer_addr) > CLIENT_PROTO_ADDR_MAX ||
		    strlen(r.client_addr) > CLIENT_PROTO_ADDR_MAX)
			return fail(c, "addresses are at most %d bytes", CLIENT_PROTO_ADDR_MAX);
		if (r.learner)
			done = "added as a learner (promote it once it has caught up)";
		else
			done = "added as a voter";
	}
	if (ask(c, &r, &a))
		return 1;
	if (c->json) {
		printf("{\"member\": ");
		json_str(c->args[0]);
		printf(", \"ok\": true}\n");
	} else
		printf("%s %s\n", c->args[0], done);
	client_answer_free(&a);
	return 0;
}

/* One request for the daemon itself (serve --join): the status, with the
 * member's message or a connection error in err. On 0, *a holds the answer
 * (client_answer_free). */
static int daemon_request(const char *endpoints, uint64_t timeout_ms, const struct client_req *r,
			  struct client_answer *a, char *err, size_t errlen)
{
	struct cli c = {.eps.timeout_ms = timeout_ms};
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

int cli_member_add_learner(const char *endpoints, const char *name, const char *peer_addr,
			   const char *client_addr, uint64_t timeout_ms, char *err, size_t errlen)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_ADD,
			       .name = name,
			       .peer_addr = peer_addr,
			       .client_addr = client_addr ? client_addr : "",
			       .learner = true};
	struct client_answer a;
	int rv = daemon_request(endpoints, timeout_ms, &r, &a, err, errlen);

	if (rv == 0)
		client_answer_free(&a);
	return rv;
}

int cli_member_peers(const char *endpoints, uint64_t timeout_ms,
		     void (*cb)(void *arg, uint64_t id, const char *name, const char *peer,
				const char *client),
		     void *arg, char *err, size_t errlen)
{
	struct client_req r = {.type = CLIENT_REQ_MEMBER_LIST};
	struct client_answer a;
	int rv = daemon_request(endpoints, timeout_ms, &r, &a, err, errlen);

	if (rv)
		return rv;
	for (size_t i = 0; i < a.resp.nmembers; i++)
		cb(arg, a.resp.members[i].id, a.resp.members[i].name, a.resp.members[i].peer_addr,
		   a.resp.members[i].client_addr);
	client_answer_free(&a);
	return 0;
}

/* ---- get / put / del ---------------------------------------------------------------- */

static void kv_print(const struct cli *c, const struct client_kv *kv, bool first)
{
	if (c->json) {
		printf("%s\n  {\"key\": ", first ? "" : ",");
		json_str(kv->key);
		printf(", \"type\": \"%s\", \"mode\": %" PRIu32 ", \"create_revision\": %" PRIu64
		       ", \"mod_revision\": %" PRIu64 ", \"version\": %" PRIu64 ", \"value\": ",
		       type_name(kv->type), kv->mode, kv->create_rev, kv->mod_rev, kv->version);
		base64(kv->value, kv->value_len);
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

static int check_key(const struct cli *c, const char *key)
{
	if (key[0] != '/')
		return fail(c, "keys are absolute paths (/%s)", key);
	return 0;
}

static int run_get(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_GET,
			       .key = c->args[0],
			       .rev = c->rev,
			       .flags = c->prefix ? CLIENT_GET_PREFIX : 0,
			       .after = ""};
	char after[CLIENT_PROTO_KEY_MAX + 1];
	bool first = true;
	struct client_answer a;

	if (check_key(c, r.key))
		return 1;
	for (;;) {
		if (ask(c, &r, &a))
			return 1;
		if (!c->prefix && !c->json) {
			const struct client_kv *kv = &a.resp.kvs[0];

			if (a.resp.nkvs != 1 || kv->type == STORE_DIR) {
				client_answer_free(&a);
				return fail(c, "%s (use --prefix to list it)",
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

/* The whole of stdin, refusing more than any member could take. */
static int read_stdin(const struct cli *c, uint8_t **out, size_t *len)
{
	size_t cap = 64 << 10, n = 0;
	uint8_t *buf = malloc(cap);

	while (buf) {
		ssize_t got;

		if (n == cap) {
			uint8_t *grown;

			if (cap > CLIENT_PROTO_MAX_PAYLOAD) {
				free(buf);
				return fail(c, "%s", qfs_strerror(QFS_EFBIG));
			}
			grown = realloc(buf, cap * 2);
			if (!grown)
				break;
			buf = grown;
			cap *= 2;
		}
		got = read(0, buf + n, cap - n);
		if (got == 0) {
			*out = buf;
			*len = n;
			return 0;
		}
		if (got < 0 && errno != EINTR) {
			free(buf);
			return fail(c, "reading stdin: %s", strerror(errno));
		}
		if (got > 0)
			n += (size_t)got;
	}
	free(buf);
	return fail(c, "out of memory reading stdin");
}

static int run_write(struct cli *c)
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

	if (check_key(c, r.key))
		return 1;
	if (put && strcmp(c->args[1], "-") == 0) {
		if (read_stdin(c, &stdin_value, &r.value_len))
			return 1;
		r.value = stdin_value;
	} else if (put) {
		r.value = (const uint8_t *)c->args[1];
		r.value_len = strlen(c->args[1]);
	}
	r.flags = c->prefix ? CLIENT_DEL_PREFIX : 0;
	rv = ask(c, &r, &a);
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

/* ---- leases -------------------------------------------------------------------------- */

/* Seconds ("10", "2.5") into milliseconds: > 0 and within what the store
 * takes. Whether it is long enough is the member's to say (1.5 x its
 * election timeout, which the CLI cannot know). */
static int parse_ttl(const char *s, int64_t *ms)
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
static int parse_lease_id(const char *s, uint64_t *id)
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

static int run_lease_grant(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_GRANT};
	struct client_answer a;

	if (parse_ttl(c->args[0], &r.ttl_ms)) {
		fprintf(stderr, "quorumfs: %s: TTL wants seconds above 0 (decimals allowed)\n",
			c->what);
		return 2;
	}
	if (ask(c, &r, &a))
		return 1;
	lease_print(c, "granted", a.resp.lease_id, a.resp.ttl_ms);
	client_answer_free(&a);
	return 0;
}

static int run_lease_revoke(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_REVOKE};
	struct client_answer a;

	if (parse_lease_id(c->args[0], &r.lease_id))
		return bad_lease_arg(c);
	if (ask(c, &r, &a))
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
		json_str(l->keys[i]);
	}
	putchar(']');
	if (l->nkeys_listed < l->nkeys)
		fputs(", \"keys_truncated\": true", stdout);
	putchar('}');
}

static int run_lease_list(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_LIST,
			       .flags = c->json ? CLIENT_LEASE_LIST_KEYS : 0};
	struct client_answer a;
	bool any = false, more = true;

	while (more) {
		if (ask(c, &r, &a))
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
static int run_lease_keepalive(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_LEASE_RENEW};
	struct sigaction sa = {.sa_handler = on_keepalive_signal}, old_int, old_term;
	uint64_t last_ok = 0, ttl_ms = 0;
	char err[CLIENT_ERR_MAX], ttl[32];
	int rv = 0;

	if (parse_lease_id(c->args[0], &r.lease_id))
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
				rv = fail_resp(c, &a.resp);
				client_answer_free(&a);
				break;
			}
			snprintf(err, sizeof(err), "%s", a.resp.msg);
			client_answer_free(&a);
		}
		if (!last_ok || c->once) {
			rv = fail(c, "%s", err);
			break;
		}
		if (client_now_ms() - last_ok >= ttl_ms) {
			rv = fail(c,
				  "no renewal for %s s, the lease's ttl: it has probably expired "
				  "(last error: %s)",
				  client_proto_secs_str((int64_t)(client_now_ms() - last_ok), ttl, sizeof(ttl)),
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

static const char keepalive_details[] =
    "Renews the lease at once and then every ttl/3 until interrupted (Ctrl-C or\n"
    "SIGTERM: exit 0; the lease then expires ttl seconds after the last renewal),\n"
    "printing one line per renewal: lease ID renewed, ttl T. A renewal that fails\n"
    "for a while (no leader, a member down) is retried on the other endpoints;\n"
    "once a whole ttl passed without one, or when the lease no longer exists\n"
    "(expired or revoked), it exits 1.\n";

/* ---- watch --------------------------------------------------------------------------- */

/* Where a watch stands, in what was printed: every event of the revisions
 * below `next`, and the first `done` events of revision `next`. A resumed
 * stream starts at `next` and its first `done` events are skipped, so the
 * output has no gap and no duplicate across reconnections. */
struct watch_pos {
	uint64_t next, done;
	uint64_t last_rev;		 /* of the last event printed, for the order check */
	uint64_t stream_rev, stream_idx; /* this connection's count within a revision */
};

/* A value on one line: control bytes and backslashes escaped. */
static void value_print(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\')
			fputs("\\\\", stdout);
		else if (p[i] == '\n')
			fputs("\\n", stdout);
		else if (p[i] == '\t')
			fputs("\\t", stdout);
		else if (p[i] == '\r')
			fputs("\\r", stdout);
		else if (p[i] < 0x20 || p[i] == 0x7f)
			printf("\\x%02x", p[i]);
		else
			putchar(p[i]);
	}
}

static void event_print(const struct cli *c, const struct client_event *ev)
{
	const struct client_kv *kv = &ev->kv;
	bool put = ev->type == CLIENT_EVENT_PUT;

	if (c->json) {
		printf("{\"revision\": %" PRIu64 ", \"type\": \"%s\", \"key\": ", ev->revision,
		       put ? "PUT" : "DELETE");
		json_str(kv->key);
		printf(", \"kind\": \"%s\"", type_name(kv->type));
		if (put) {
			printf(", \"mode\": %" PRIu32 ", \"create_revision\": %" PRIu64
			       ", \"mod_revision\": %" PRIu64 ", \"version\": %" PRIu64
			       ", \"value\": ",
			       kv->mode, kv->create_rev, kv->mod_rev, kv->version);
			base64(kv->value, kv->value_len);
		}
		fputs("}\n", stdout);
		return;
	}
	/* A trailing '/' marks a directory (keys never end in one). */
	printf("%" PRIu64 " %s %s%s", ev->revision, put ? "PUT" : "DELETE", kv->key,
	       kv->type == STORE_DIR && strcmp(kv->key, "/") != 0 ? "/" : "");
	if (put && kv->type != STORE_DIR) {
		putchar(' ');
		value_print(kv->value, kv->value_len);
	}
	putchar('\n');
}

enum watch_end {
	WATCH_LOST,   /* the connection broke: resume elsewhere */
	WATCH_FAILED, /* printed an error: exit 1 */
	WATCH_STDOUT, /* our reader went away: exit quietly */
};

/* Prints one frame's events, skipping what an earlier stream printed. */
static enum watch_end watch_frame(const struct cli *c, struct watch_pos *pos,
				  const struct client_resp *r)
{
	for (size_t i = 0; i < r->nevents; i++) {
		const struct client_event *ev = &r->events[i];

		if (ev->revision != pos->stream_rev) {
			pos->stream_rev = ev->revision;
			pos->stream_idx = 0;
		}
		pos->stream_idx++;
		if (ev->revision < pos->next ||
		    (ev->revision == pos->next && pos->stream_idx <= pos->done))
			continue;
		if (ev->revision < pos->last_rev) {
			fail(c,
			     "the member sent revision %" PRIu64 " after %" PRIu64
			     ", out of order; stopping",
			     ev->revision, pos->last_rev);
			return WATCH_FAILED;
		}
		event_print(c, ev);
		if (ev->revision != pos->next) {
			pos->next = ev->revision;
			pos->done = 0;
		}
		pos->done++;
		pos->last_rev = ev->revision;
		/* Line by line, so `| head` and scripts see each event at once. */
		if (fflush(stdout) != 0)
			return WATCH_STDOUT;
	}
	if (r->revision >= pos->next) {
		pos->next = r->revision + 1;
		pos->done = 0;
	}
	return WATCH_LOST;
}

/* Waits for the member's next frame; false if our reader went away
 * meanwhile (a pipe whose reader closed reports POLLERR on our end), so
 * `watch | head` ends when head does, not at the next event. */
static bool watch_wait(int fd)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = STDOUT_FILENO, .events = 0}};

	for (;;) {
		int n = poll(p, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return true; /* client_recv() will say what is wrong */
		if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			return false;
		if (p[0].revents)
			return true;
	}
}

/*
 * One connection: WATCH from pos->next, then events until it breaks.
 * *established says whether the member accepted the watch (so losing it
 * is worth a resume elsewhere); err says why it ended.
 */
static enum watch_end watch_stream(const struct cli *c, const char *ep, struct watch_pos *pos,
				   bool *established, char *err)
{
	struct client_req r = {.type = CLIENT_REQ_WATCH,
			       .key = c->args[0],
			       .flags = c->prefix ? CLIENT_WATCH_PREFIX : 0,
			       .rev = pos->next};
	uint64_t deadline = client_now_ms() + c->eps.timeout_ms;
	enum watch_end end = WATCH_LOST;
	struct client_answer a;
	struct qbuf frame;
	int fd;

	*established = false;
	qbuf_init(&frame);
	if (client_proto_req_encode(&r, &frame) != 0) {
		qbuf_close(&frame);
		fail(c, "key too long for the protocol");
		return WATCH_FAILED;
	}
	fd = client_connect(ep, deadline, err);
	if (fd < 0)
		goto out_frame;
	client_keepalive(fd, 10);
	if (client_send(fd, &frame, deadline, ep, err) != 0)
		goto out_fd;
	pos->stream_rev = pos->stream_idx = 0;
	for (;;) {
		if (*established && !watch_wait(fd)) {
			end = WATCH_STDOUT;
			break;
		}
		/* The first answer within the deadline; then as long as it takes. */
		if (client_recv(fd, CLIENT_REQ_WATCH, *established ? 0 : deadline, ep, &a, err))
			break;
		if (a.resp.status != 0) {
			if (!*established && (client_ask_elsewhere(a.resp.status) ||
					      a.resp.status == QFS_ETIMEDOUT)) {
				snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, a.resp.msg);
			} else {
				fail_resp(c, &a.resp);
				end = WATCH_FAILED;
			}
			client_answer_free(&a);
			break;
		}
		*established = true;
		end = watch_frame(c, pos, &a.resp);
		client_answer_free(&a);
		if (end != WATCH_LOST)
			break;
	}
out_fd:
	close(fd);
out_frame:
	qbuf_close(&frame);
	return end;
}

static int run_watch(struct cli *c)
{
	struct watch_pos pos = {.next = c->rev};
	char err[CLIENT_ERR_MAX], lost_at[CLIENT_PROTO_ADDR_MAX + 1] = "";
	size_t at = 0, tries = 0;
	bool established, ever = false;

	if (check_key(c, c->args[0]))
		return 1;
	/* Each endpoint once; after a loss, each once more, the lost one last
	 * (it may have come back by then). */
	while (tries < c->eps.n) {
		const char *ep = c->eps.ep[at];
		enum watch_end end = watch_stream(c, ep, &pos, &established, err);

		if (end == WATCH_FAILED)
			return 1;
		if (end == WATCH_STDOUT) {
			/* `| head` had enough: nothing left to say, nowhere to say it. */
			__fpurge(stdout);
			return 0;
		}
		if (established) {
			ever = true;
			tries = 0;
			snprintf(lost_at, sizeof(lost_at), "%s", ep);
			if (c->eps.n > 1)
				fprintf(
				    stderr,
				    "quorumfs: %s: connection to %s lost after revision %" PRIu64
				    " (%s); trying the other endpoints\n",
				    c->what, ep, pos.next - 1, err);
		}
		tries++;
		at = (at + 1) % c->eps.n;
	}
	if (!ever)
		return fail(c, "%s", err);
	if (pos.done)
		return fail(c,
			    "connection to %s lost after revision %" PRIu64 " (and %" PRIu64
			    " events of revision %" PRIu64 "); resume with --rev %" PRIu64,
			    lost_at, pos.next - 1, pos.done, pos.next, pos.next);
	return fail(c,
		    "connection to %s lost after revision %" PRIu64 "; resume with --rev %" PRIu64,
		    lost_at, pos.next - 1, pos.next);
}

static const char watch_details[] =
    "Prints one line per event, in revision order, with no gap and no duplicate:\n"
    "  REV PUT KEY VALUE    (control bytes in VALUE escaped: \\n \\t \\\\ \\xHH)\n"
    "  REV DELETE KEY       (a directory's KEY ends in '/')\n"
    "or with -w json one object per line (value in base64), flushed at once.\n"
    "Without --rev it starts with the next change; with --rev N it first replays\n"
    "history from revision N (an error if N was compacted, naming the oldest\n"
    "revision left). It runs until interrupted. When a connection is lost it\n"
    "resumes on the next --endpoints member from where it stopped; when none\n"
    "answers, it exits 1 saying which --rev resumes it. A watcher that stops\n"
    "reading falls behind and is cancelled by the member with the same advice.\n";

/* ---- command line -------------------------------------------------------------------- */

static const struct command commands[] = {
    {"status", NULL, 0, 0, "", "one line per member: role, term, indexes, revision, health",
     run_status},
    {"member", "list", 0, 0, "", "the members, voters and learners", run_member_list},
    {"member", "add", 2, FL_LEARNER | FL_VOTER | FL_CLIENT, "NAME PEER_ADDR",
     "add a member (as a learner unless --voter); start it with serve --join", run_member_change},
    {"member", "remove", 1, 0, "NAME", "remove a member", run_member_change},
    {"member", "promote", 1, 0, "NAME", "make a learner a voter", run_member_change},
    {"leader", "transfer", 1, 0, "NAME", "hand leadership to another voter", run_member_change},
    {"get", NULL, 1, FL_PREFIX | FL_REV, "KEY",
     "print a value (raw), or with --prefix every key under KEY then its value", run_get},
    {"put", NULL, 2, FL_TTL | FL_LEASE, "KEY VALUE",
     "set a value, creating parent dirs; VALUE - reads stdin", run_write},
    {"del", NULL, 1, FL_PREFIX, "KEY", "delete a key; --prefix: and everything under it",
     run_write},
    {"watch", NULL, 1, FL_PREFIX | FL_START, "KEY",
     "print changes to KEY (--prefix: and under it) as they happen, or from --rev N", run_watch},
    {"lease", "grant", 1, 0, "TTL",
     "grant a lease of TTL seconds (decimals allowed); prints its id", run_lease_grant},
    {"lease", "keepalive", 1, FL_ONCE, "ID", "renew lease ID now and every ttl/3 until interrupted",
     run_lease_keepalive},
    {"lease", "revoke", 1, 0, "ID", "end lease ID now, deleting its keys", run_lease_revoke},
    {"lease", "list", 0, 0, "",
     "one line per lease: id, ttl, seconds left, keys (-w json: the keys too)", run_lease_list},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct {
	unsigned flag;
	const char *name, *help;
} flag_help[] = {
    {FL_PREFIX, "--prefix", "the key and its whole subtree"},
    {FL_REV, "--rev N", "read at revision N (default: the latest)"},
    {FL_LEARNER, "--learner", "add as a non-voting learner (the default)"},
    {FL_VOTER, "--voter", "add as a learner, then promote at once"},
    {FL_CLIENT, "--client ADDR", "the new member's --listen-client address"},
    {FL_START, "--rev N", "start at revision N (default: the next change)"},
    {FL_TTL, "--ttl S", "attach the key to a new lease of S seconds (printed)"},
    {FL_LEASE, "--lease ID", "attach the key to lease ID"},
    {FL_ONCE, "--once", "renew once and exit"},
};

static void usage_global(FILE *out)
{
	fprintf(out, "  --%-22s %s\n", "endpoints A,B,...",
		"client ports to ask (default " DEFAULT_ENDPOINT ")");
	fprintf(out, "  --%-22s %s\n", "timeout-ms N", "give up after (default 6000)");
	fprintf(out, "  -w %-21s %s\n", "json|simple", "output format (default simple)");
}

static void usage_command(const struct command *cmd)
{
	printf("usage: quorumfs %s%s%s %s [FLAGS]\n\n%s\n\n", cmd->name, cmd->sub ? " " : "",
	       cmd->sub ? cmd->sub : "", cmd->args_usage, cmd->help);
	if (cmd->run == run_watch)
		printf("%s\n", watch_details);
	if (cmd->run == run_lease_keepalive)
		printf("%s\n", keepalive_details);
	printf("flags:\n");
	for (size_t i = 0; i < sizeof(flag_help) / sizeof(flag_help[0]); i++)
		if (cmd->flags & flag_help[i].flag)
			printf("  %-24s %s\n", flag_help[i].name, flag_help[i].help);
	usage_global(stdout);
}

void cli_usage_commands(FILE *out)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char name[64];

		snprintf(name, sizeof(name), "%s%s%s %s", commands[i].name,
			 commands[i].sub ? " " : "", commands[i].sub ? commands[i].sub : "",
			 commands[i].args_usage);
		fprintf(out, "  %-26s %s\n", name, commands[i].help);
	}
}

bool cli_is_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return true;
	return false;
}

static int usage_error(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *what, const char *fmt, ...)
{
	char msg[CLIENT_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "quorumfs: %s: %s (see quorumfs %s --help)\n", what, msg, what);
	return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* Parses flags and positional arguments after the command words. */
static int parse_args(struct cli *c, int argc, char **argv, const char *what)
{
	const struct command *cmd = c->cmd;
	int npos = 0;
	bool flags_done = false;

	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *value = NULL, *eq;
		char name[32];
		unsigned need = 0;

		if (flags_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
			if (npos >= cmd->nargs)
				return usage_error(what, "unexpected argument '%s'", arg);
			c->args[npos++] = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			flags_done = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage_command(cmd);
			return 1;
		}
		eq = strchr(arg, '=');
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (eq)
			value = eq + 1;
		if (strcmp(name, "--prefix") == 0) {
			need = FL_PREFIX;
			c->prefix = true;
		} else if (strcmp(name, "--learner") == 0) {
			need = FL_LEARNER;
			c->learner = true;
		} else if (strcmp(name, "--voter") == 0) {
			need = FL_VOTER;
			c->voter = true;
		} else if (strcmp(name, "--once") == 0) {
			need = FL_ONCE;
			c->once = true;
		} else if (strcmp(name, "--ttl") == 0 || strcmp(name, "--lease") == 0) {
			if (!value && i + 1 >= argc)
				return usage_error(what, "%s needs a value", name);
			if (!value)
				value = argv[++i];
			if (strcmp(name, "--ttl") == 0) {
				need = FL_TTL;
				if (parse_ttl(value, &c->ttl_ms))
					return usage_error(
					    what, "--ttl wants seconds above 0, got '%s'", value);
			} else {
				need = FL_LEASE;
				if (parse_lease_id(value, &c->lease_id))
					return usage_error(
					    what, "--lease wants a lease id (hex), got '%s'",
					    value);
			}
		} else if (strcmp(name, "--rev") == 0 || strcmp(name, "--client") == 0 ||
			   strcmp(name, "--endpoints") == 0 || strcmp(name, "--timeout-ms") == 0 ||
			   strcmp(name, "-w") == 0 || strcmp(name, "--write-out") == 0) {
			if (!value && i + 1 >= argc)
				return usage_error(what, "%s needs a value", name);
			if (!value)
				value = argv[++i];
			if (strcmp(name, "--rev") == 0) {
				need = (cmd->flags & FL_START) ? FL_START : FL_REV;
				if (parse_u64(value, &c->rev) || c->rev == 0)
					return usage_error(
					    what, "--rev wants a revision >= 1, got '%s'", value);
			} else if (strcmp(name, "--client") == 0) {
				need = FL_CLIENT;
				c->client_addr = value;
			} else if (strcmp(name, "--endpoints") == 0) {
				if (client_endpoints_set(&c->eps, value))
					return usage_error(what,
							   "--endpoints wants HOST:PORT,... "
							   "(at most %d)",
							   CLIENT_MAX_ENDPOINTS);
			} else if (strcmp(name, "--timeout-ms") == 0) {
				if (parse_u64(value, &c->eps.timeout_ms) ||
				    c->eps.timeout_ms == 0 ||
				    c->eps.timeout_ms > 24ull * 3600 * 1000)
					return usage_error(what,
							   "--timeout-ms wants milliseconds, "
							   "got '%s'",
							   value);
			} else if (strcmp(value, "json") == 0) {
				c->json = true;
			} else if (strcmp(value, "simple") == 0) {
				c->json = false;
			} else {
				return usage_error(what, "-w takes json or simple, got '%s'",
						   value);
			}
		} else {
			return usage_error(what, "unknown flag '%s'", name);
		}
		if (need && !(cmd->flags & need))
			return usage_error(what, "%s does not apply here", name);
		if (eq && !value)
			return usage_error(what, "%s takes no value", name);
		if (eq && (need & (FL_PREFIX | FL_LEARNER | FL_VOTER | FL_ONCE)))
			return usage_error(what, "%s takes no value", name);
	}
	if (npos < cmd->nargs)
		return usage_error(what, "missing %s", cmd->args_usage);
	if (c->learner && c->voter)
		return usage_error(what, "--learner and --voter exclude each other");
	if (c->ttl_ms && c->lease_id)
		return usage_error(what, "--ttl and --lease exclude each other");
	return 0;
}

int cli_main(int argc, char **argv)
{
	struct cli c = {.eps.timeout_ms = DEFAULT_TIMEOUT_MS};
	const char *sub = argc > 1 ? argv[1] : NULL;
	char what[64];
	int used = 1, rv;

	for (size_t i = 0; i < NCOMMANDS && !c.cmd; i++) {
		if (strcmp(commands[i].name, argv[0]) != 0)
			continue;
		if (!commands[i].sub) {
			c.cmd = &commands[i];
		} else if (sub && strcmp(commands[i].sub, sub) == 0) {
			c.cmd = &commands[i];
			used = 2;
		}
	}
	if (!c.cmd) {
		bool help = sub && (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0);

		if (help) {
			printf("usage:\n");
			for (size_t i = 0; i < NCOMMANDS; i++)
				if (strcmp(commands[i].name, argv[0]) == 0)
					printf("  quorumfs %s %s %s\n", commands[i].name,
					       commands[i].sub, commands[i].args_usage);
			return 0;
		}
		if (sub)
			fprintf(stderr,
				"quorumfs: %s: unknown subcommand '%s' (see quorumfs %s --help)\n",
				argv[0], sub, argv[0]);
		else
			fprintf(stderr,
				"quorumfs: %s: missing a subcommand (see quorumfs %s --help)\n",
				argv[0], argv[0]);
		return 2;
	}
	snprintf(what, sizeof(what), "%s%s%s", c.cmd->name, c.cmd->sub ? " " : "",
		 c.cmd->sub ? c.cmd->sub : "");
	rv = parse_args(&c, argc - used, argv + used, what);
	if (rv == 0 && !c.eps.list && client_endpoints_set(&c.eps, DEFAULT_ENDPOINT))
		rv = usage_error(what, "out of memory");
	if (rv) {
		client_endpoints_close(&c.eps);
		return rv == 1 ? 0 : rv;
	}
	snprintf(c.what, sizeof(c.what), "%s%s%.100s", what, c.cmd->nargs ? " " : "",
		 c.cmd->nargs ? c.args[0] : "");
	rv = c.cmd->run(&c);
	client_endpoints_close(&c.eps);
	if (fflush(stdout) != 0 && rv == 0) {
		fprintf(stderr, "quorumfs: %s: writing output: %s\n", c.what, strerror(errno));
		rv = 1;
	}
	return rv;
}
