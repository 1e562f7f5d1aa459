/*
 * The front of the `quorumfs` client commands (cli.h): the helpers every
 * command shares (error lines, a request with its error handling, JSON
 * output, key checks), then the command table, flag parsing, usage text and
 * cli_main(). The commands themselves are in cli_status.c, cli_member.c,
 * cli_kv.c, cli_txn.c, cli_compact.c, cli_watch.c, cli_lease.c, cli_auth.c
 * and the offline ones; cli_impl.h is what they share.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli.h"
#include "cli_impl.h"
#include "client_tls.h"

#define DEFAULT_ENDPOINT "127.0.0.1:2379"
#define DEFAULT_TIMEOUT_MS 6000 /* above the members' default request timeout */

int cli_fail(const struct cli *c, const char *fmt, ...)
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
int cli_fail_resp(const struct cli *c, const struct client_resp *r)
{
	if (r->status == QFS_ENOTLEADER && r->leader_name[0] && !r->leader_client[0])
		return cli_fail(c, "%s (the leader is %s, which has no client address)", r->msg,
				r->leader_name);
	if (r->status == QFS_ENOTLEADER && !r->leader_name[0])
		return cli_fail(c, "%s, and no leader is known (no quorum?)", r->msg);
	return cli_fail(c, "%s", r->msg[0] ? r->msg : qfs_strerror(r->status));
}

/* request() and the error line in one: 0 with a successful answer, or 1. */
int cli_ask(const struct cli *c, const struct client_req *r, struct client_answer *a)
{
	char err[CLIENT_ERR_MAX];

	if (client_request(&c->eps, r, NULL, a, err) != 0)
		return cli_fail(c, "%s", err);
	if (a->resp.status != 0) {
		cli_fail_resp(c, &a->resp);
		client_answer_free(a);
		return 1;
	}
	return 0;
}

int cli_key_check(const struct cli *c, const char *key)
{
	if (key[0] != '/')
		return cli_fail(c, "keys are absolute paths (/%s)", key);
	return 0;
}

int cli_stdin_read(const struct cli *c, uint8_t **out, size_t *len)
{
	size_t cap = 64 << 10, n = 0;
	uint8_t *buf = malloc(cap);

	while (buf) {
		ssize_t got;

		if (n == cap) {
			uint8_t *grown;

			if (cap > CLIENT_PROTO_MAX_PAYLOAD) {
				free(buf);
				return cli_fail(c, "%s", qfs_strerror(QFS_EFBIG));
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
			return cli_fail(c, "reading stdin: %s", strerror(errno));
		}
		if (got > 0)
			n += (size_t)got;
	}
	free(buf);
	return cli_fail(c, "out of memory reading stdin");
}

/* ---- output helpers ---------------------------------------------------------------- */

void cli_json_str(const char *s)
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

void cli_print_escaped(const uint8_t *p, size_t n)
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

void cli_json_base64(const uint8_t *p, size_t n)
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

const char *cli_human_size(uint64_t v, char *buf, size_t len)
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

const char *cli_type_name(uint8_t t)
{
	return t == STORE_DIR ? "dir" : t == STORE_SYMLINK ? "symlink" : "file";
}

/* ---- command line -------------------------------------------------------------------- */

static const struct command commands[] = {
    {"status", NULL, 0, 0, "", "one line per member: role, term, indexes, revision, health",
     cli_status_run},
    {"member", "list", 0, 0, "", "the members, voters and learners", cli_member_list_run},
    {"member", "add", 2, FL_LEARNER | FL_VOTER | FL_CLIENT, "NAME PEER_ADDR",
     "add a member (as a learner unless --voter); start it with serve --join",
     cli_member_change_run},
    {"member", "remove", 1, 0, "NAME", "remove a member", cli_member_change_run},
    {"member", "promote", 1, 0, "NAME", "make a learner a voter", cli_member_change_run},
    {"leader", "transfer", 1, 0, "NAME", "hand leadership to another voter", cli_member_change_run},
    {"get", NULL, 1, FL_PREFIX | FL_REV, "KEY",
     "print a value (raw), or with --prefix every key under KEY then its value", cli_kv_get_run},
    {"put", NULL, 2, FL_TTL | FL_LEASE, "KEY VALUE",
     "set a value, creating parent dirs; VALUE - reads stdin", cli_kv_write_run},
    {"del", NULL, 1, FL_PREFIX, "KEY", "delete a key; --prefix: and everything under it",
     cli_kv_write_run},
    {"txn", NULL, 0, 0, "",
     "compare-and-swap: compares, then one of two lists of puts and dels (stdin), atomically",
     cli_txn_run},
    {"compact", NULL, 1, 0, "REV", "drop the history before revision REV on every member",
     cli_compact_run},
    {"watch", NULL, 1, FL_PREFIX | FL_START, "KEY",
     "print changes to KEY (--prefix: and under it) as they happen, or from --rev N",
     cli_watch_run},
    {"lease", "grant", 1, 0, "TTL",
     "grant a lease of TTL seconds (decimals allowed); prints its id", cli_lease_grant_run},
    {"lease", "keepalive", 1, FL_ONCE, "ID", "renew lease ID now and every ttl/3 until interrupted",
     cli_lease_keepalive_run},
    {"lease", "revoke", 1, 0, "ID", "end lease ID now, deleting its keys", cli_lease_revoke_run},
    {"lease", "list", 0, 0, "",
     "one line per lease: id, ttl, seconds left, keys (-w json: the keys too)", cli_lease_list_run},
    {"snapshot", "save", 1, 0, "FILE",
     "write a consistent backup of the store (linearizable) to FILE", cli_snapshot_save_run},
    {"snapshot", "restore", 1, FL_OFFLINE | FL_DATA_DIR | FL_NAME | FL_INITIAL_CLUSTER, "FILE",
     "make a new member's data dir from a backup, for a new cluster (offline)", cli_restore_run},
    {"check", NULL, 1, FL_OFFLINE, "DATA_DIR",
     "verify a data dir (offline): snapshots and WAL, CRCs, order, hard state", cli_check_run},
    {"dump-wal", NULL, 1, FL_OFFLINE, "DATA_DIR",
     "print a data dir's snapshots and every WAL record, decoded (offline)", cli_dump_run},
    {"user", "add", 1, 0, "NAME", "add a user (a client certificate's CN)", cli_auth_change_run},
    {"user", "delete", 1, 0, "NAME", "delete a user", cli_auth_change_run},
    {"user", "list", 0, 0, "", "one line per user with its roles", cli_auth_list_run},
    {"user", "grant-role", 2, 0, "NAME ROLE", "give a user a role (root: everything)",
     cli_auth_change_run},
    {"user", "revoke-role", 2, 0, "NAME ROLE", "take a role from a user", cli_auth_change_run},
    {"role", "add", 1, 0, "NAME", "add a role (no permissions yet)", cli_auth_change_run},
    {"role", "delete", 1, 0, "NAME", "delete a role, revoking it from every user",
     cli_auth_change_run},
    {"role", "list", 0, 0, "", "one line per permission of each role", cli_auth_list_run},
    {"role", "grant-permission", 3, 0, "ROLE read|readwrite PREFIX",
     "let a role read, or read and write, the keys under PREFIX", cli_auth_change_run},
    {"role", "revoke-permission", 2, 0, "ROLE PREFIX", "take a role's permission on PREFIX away",
     cli_auth_change_run},
    {"auth", "enable", 0, 0, "",
     "check users and roles on the client ports (needs user root with role root)",
     cli_auth_change_run},
    {"auth", "disable", 0, 0, "", "stop checking users and roles", cli_auth_change_run},
    {"auth", "status", 0, 0, "", "whether auth is enabled, how many users and roles",
     cli_auth_list_run},
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
    {FL_DATA_DIR, "--data-dir DIR", "the new data dir (must not exist, or be empty)"},
    {FL_NAME, "--name NAME", "the member this data dir is for"},
    {FL_INITIAL_CLUSTER, "--initial-cluster N=IP:PORT,...",
     "the new cluster's voters (default: NAME alone)"},
};

static void usage_global(FILE *out, bool offline)
{
	if (offline) {
		fprintf(out, "  -w %-21s %s\n", "json|simple", "output format (default simple)");
		return;
	}
	fprintf(out, "  --%-22s %s\n", "endpoints A,B,...",
		"client ports to ask (default " DEFAULT_ENDPOINT ")");
	fprintf(out, "  --%-22s give up after (default %d)\n", "timeout-ms N", DEFAULT_TIMEOUT_MS);
	fprintf(out, "  -w %-21s %s\n", "json|simple", "output format (default simple)");
	fprintf(out, "  --%-22s %s\n", "cacert FILE",
		"speak TLS; the members' certificates must chain to FILE");
	fprintf(out, "  --%-22s %s\n", "cert FILE, --key FILE",
		"our certificate and key (its CN is the user)");
}

static void usage_command(const struct command *cmd)
{
	printf("usage: quorumfs %s%s%s%s%s [FLAGS]\n\n%s\n\n", cmd->name, cmd->sub ? " " : "",
	       cmd->sub ? cmd->sub : "", cmd->args_usage[0] ? " " : "", cmd->args_usage, cmd->help);
	if (cmd->run == cli_watch_run)
		printf("%s\n", cli_watch_details);
	if (cmd->run == cli_lease_keepalive_run)
		printf("%s\n", cli_lease_keepalive_details);
	if (cmd->run == cli_snapshot_save_run)
		printf("%s\n", cli_snapshot_save_details);
	if (cmd->run == cli_restore_run)
		printf("%s\n", cli_restore_details);
	if (cmd->run == cli_check_run)
		printf("%s\n", cli_check_details);
	if (cmd->run == cli_txn_run)
		printf("%s\n", cli_txn_details);
	if (cmd->run == cli_compact_run)
		printf("%s\n", cli_compact_details);
	if (cmd->run == cli_auth_change_run || cmd->run == cli_auth_list_run)
		printf("%s\n", cli_auth_details);
	printf("flags:\n");
	for (size_t i = 0; i < sizeof(flag_help) / sizeof(flag_help[0]); i++)
		if (cmd->flags & flag_help[i].flag)
			printf("  %-24s %s%s\n", flag_help[i].name, flag_help[i].help,
			       FL_REQUIRED & flag_help[i].flag ? " (required)" : "");
	usage_global(stdout, cmd->flags & FL_OFFLINE);
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
				if (cli_lease_ttl_parse(value, &c->ttl_ms))
					return usage_error(
					    what, "--ttl wants seconds above 0, got '%s'", value);
			} else {
				need = FL_LEASE;
				if (cli_lease_id_parse(value, &c->lease_id))
					return usage_error(
					    what, "--lease wants a lease id (hex), got '%s'",
					    value);
			}
		} else if (strcmp(name, "--data-dir") == 0 || strcmp(name, "--name") == 0 ||
			   strcmp(name, "--initial-cluster") == 0) {
			if (!value && i + 1 >= argc)
				return usage_error(what, "%s needs a value", name);
			if (!value)
				value = argv[++i];
			if (!value[0])
				return usage_error(what, "%s needs a value", name);
			if (strcmp(name, "--data-dir") == 0) {
				need = FL_DATA_DIR;
				c->data_dir = value;
			} else if (strcmp(name, "--name") == 0) {
				need = FL_NAME;
				c->name = value;
			} else {
				need = FL_INITIAL_CLUSTER;
				c->initial_cluster = value;
			}
		} else if (strcmp(name, "--rev") == 0 || strcmp(name, "--client") == 0 ||
			   strcmp(name, "--endpoints") == 0 || strcmp(name, "--timeout-ms") == 0 ||
			   strcmp(name, "-w") == 0 || strcmp(name, "--write-out") == 0 ||
			   strcmp(name, "--cacert") == 0 || strcmp(name, "--cert") == 0 ||
			   strcmp(name, "--key") == 0) {
			if (!value && i + 1 >= argc)
				return usage_error(what, "%s needs a value", name);
			if (!value)
				value = argv[++i];
			if (strcmp(name, "--cacert") == 0) {
				c->cacert = value;
			} else if (strcmp(name, "--cert") == 0) {
				c->cert = value;
			} else if (strcmp(name, "--key") == 0) {
				c->key = value;
			} else if (strcmp(name, "--rev") == 0) {
				need = (cmd->flags & FL_START) ? FL_START : FL_REV;
				if (parse_u64(value, &c->rev) || c->rev == 0)
					return usage_error(
					    what, "--rev wants a revision >= 1, got '%s'", value);
			} else if (strcmp(name, "--client") == 0) {
				need = FL_CLIENT;
				c->client_addr = value;
			} else if ((cmd->flags & FL_OFFLINE) &&
				   (strcmp(name, "--endpoints") == 0 ||
				    strcmp(name, "--timeout-ms") == 0)) {
				return usage_error(
				    what, "%s does not apply here (it works on local files)", name);
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
	for (size_t i = 0; i < sizeof(flag_help) / sizeof(flag_help[0]); i++) {
		unsigned f = flag_help[i].flag;
		bool given = (f == FL_DATA_DIR && c->data_dir) || (f == FL_NAME && c->name) ||
			     (f == FL_INITIAL_CLUSTER && c->initial_cluster);

		if ((cmd->flags & FL_REQUIRED & f) && !given)
			return usage_error(what, "missing %.*s",
					   (int)strcspn(flag_help[i].name, " "), flag_help[i].name);
	}
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
					printf("  quorumfs %s %s%s%s\n", commands[i].name,
					       commands[i].sub, commands[i].args_usage[0] ? " " : "",
					       commands[i].args_usage);
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
	if (c.cacert || c.cert || c.key) {
		char err[CLIENT_ERR_MAX];

		if (client_tls_create(c.cacert, c.cert, c.key, &c.eps.tls, err, sizeof(err))) {
			client_endpoints_close(&c.eps);
			return cli_fail(&c, "%s", err);
		}
	}
	rv = c.cmd->run(&c);
	client_tls_destroy(c.eps.tls);
	client_endpoints_close(&c.eps);
	if (fflush(stdout) != 0 && rv == 0) {
		fprintf(stderr, "quorumfs: %s: writing output: %s\n", c.what, strerror(errno));
		rv = 1;
	}
	return rv;
}
