/*
 * Flag parsing for `quorumfs serve`. One table lists every flag once; the
 * command line and --config files both go through set_option(), so a key
 * means the same thing in both places.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../raft/transport.h"
#include "config.h"

/* BOOL flags take no value on the command line (`--flag`, or
 * `--flag=true|false`); in a --config file `flag = true|false`. */
enum kind { STR, SIZE, NUM, BOOL };

struct flag {
	const char *name;
	enum kind kind;
	size_t offset;
	const char *help;
};

#define F(name, kind, field, help) {name, kind, offsetof(struct config, field), help}
static const struct flag flags[] = {
	F("name", STR, name, "member name (default: default)"),
	F("data-dir", STR, data_dir, "where the WAL and snapshots live (default: NAME.quorumfs)"),
	F("mount", STR, mount, "mount the tree at this directory"),
	F("listen-peer", STR, listen_peer, "IP:PORT for Raft peers"),
	F("listen-client", STR, listen_client, "IP:PORT for the quorumfs CLI"),
	F("initial-cluster", STR, initial_cluster, "NAME=IP:PORT,... peer addresses of the voters"),
	F("cluster-token", STR, cluster_token, "members only talk to the same token (default quorumfs)"),
	F("join", STR, join, "client IP:PORT of a member: join that cluster as a learner"),
	F("metrics-listen", STR, metrics_listen, "HOST:PORT for HTTP /metrics, /health, /readyz"),
	F("heartbeat-ms", NUM, heartbeat_ms, "Raft heartbeat interval (default 100)"),
	F("election-ms", NUM, election_ms, "Raft election timeout (default 1000)"),
	F("request-timeout-ms", NUM, request_timeout_ms, "give up on a write after (default 5000)"),
	F("snapshot-entries", NUM, snapshot_entries, "snapshot every N entries (default 10000)"),
	F("quota-bytes", SIZE, quota_bytes, "store size limit, K/M/G suffixes (default 2G)"),
	F("max-value-bytes", SIZE, max_value_bytes, "largest value (default 1M)"),
	F("auto-compact-revisions", NUM, auto_compact_revisions,
	  "keep the last N revisions (default 100000, 0 = never)"),
	F("log-level", STR, log_level, "debug|info|warn|error (default info)"),
	F("log-format", STR, log_format, "text|json (default text)"),
	F("peer-cert", STR, peer_cert, "PEM certificate this member shows its peers (mutual TLS)"),
	F("peer-key", STR, peer_key, "PEM private key of --peer-cert"),
	F("peer-ca", STR, peer_ca, "PEM CA(s) a peer's certificate must chain to"),
	F("client-cert", STR, client_cert, "PEM certificate of the client port (mutual TLS)"),
	F("client-key", STR, client_key, "PEM private key of --client-cert"),
	F("client-ca", STR, client_ca, "PEM CA(s) a client's (user's) certificate must chain to"),
	F("insecure-plaintext", BOOL, insecure_plaintext,
	  "allow plain TCP peer traffic on a non-loopback --listen-peer"),
};
#undef F

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->heartbeat_ms = 100;
	c->election_ms = 1000;
	c->request_timeout_ms = 5000;
	c->snapshot_entries = 10000;
	c->quota_bytes = 2ull << 30;
	c->max_value_bytes = 1u << 20;
	c->auto_compact_revisions = 100000;
	c->attr_timeout = 1.0;
}

void config_close(struct config *c)
{
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (flags[i].kind == STR)
			free(*(char **)((char *)c + flags[i].offset));
	}
	free(c->kernel_opts);
	memset(c, 0, sizeof(*c));
}

void config_usage_serve(void)
{
	printf("usage: quorumfs serve [--FLAG VALUE]... [-o MOUNT_OPTS] [--config FILE]\n\n"
	       "Runs a member and, with --mount, mounts its tree.\n\n");
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		printf("  --%-24s %s\n", flags[i].name, flags[i].help);
	printf("  --%-24s %s\n", "config FILE", "read `key = value` lines (keys as above)");
	printf("  -o %-24s %s\n", "OPTS",
	       "consistency=linearizable|serializable, ro, attr_timeout=S, allow_other,\n"
	       "                              default_permissions, other FUSE options");
}

static int parse_number(const char *s, int allow_suffix, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (*s < '0' || *s > '9')
		return QFS_EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return QFS_EINVAL;
	if (allow_suffix && *end) {
		switch (*end++) {
		case 'K': case 'k': mult = 1ull << 10; break;
		case 'M': case 'm': mult = 1ull << 20; break;
		case 'G': case 'g': mult = 1ull << 30; break;
		case 'T': case 't': mult = 1ull << 40; break;
		default: return QFS_EINVAL;
		}
		if (*end == 'i')
			end++;
		if (*end == 'B')
			end++;
	}
	if (*end || (v && mult > UINT64_MAX / v))
		return QFS_EINVAL;
	*out = v * mult;
	return 0;
}

static int set_option(struct config *c, const char *key, const char *value, const char *where)
{
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		const struct flag *f = &flags[i];
		void *field = (char *)c + f->offset;

		if (strcmp(f->name, key) != 0)
			continue;
		if (f->kind == STR) {
			char *copy = strdup(value);

			if (!copy)
				return QFS_ENOMEM;
			free(*(char **)field);
			*(char **)field = copy;
			return 0;
		}
		if (f->kind == BOOL) {
			bool on = strcmp(value, "true") == 0 || strcmp(value, "1") == 0;

			if (!on && strcmp(value, "false") != 0 && strcmp(value, "0") != 0) {
				fprintf(stderr,
					"quorumfs: %s: --%s wants true or false, got '%s'\n", where,
					key, value);
				return QFS_EINVAL;
			}
			*(bool *)field = on;
			return 0;
		}
		if (parse_number(value, f->kind == SIZE, field) != 0) {
			fprintf(stderr, "quorumfs: %s: --%s wants a %s, got '%s'\n", where, key,
				f->kind == SIZE ? "size (e.g. 1048576 or 1M)" : "number", value);
			return QFS_EINVAL;
		}
		return 0;
	}
	fprintf(stderr, "quorumfs: %s: unknown option '%s' (see quorumfs serve --help)\n", where,
		key);
	return QFS_EINVAL;
}

static bool flag_is_bool(const char *name)
{
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcmp(flags[i].name, name) == 0)
			return flags[i].kind == BOOL;
	return false;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

static int read_config_file(struct config *c, const char *path)
{
	char line[4096], where[4200];
	int lineno = 0, rv = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "quorumfs: --config %s: %s\n", path, strerror(errno));
		return QFS_EINVAL;
	}
	while (rv == 0 && fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq;

		lineno++;
		if (*s == 0 || *s == '#')
			continue;
		eq = strchr(s, '=');
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (!eq) {
			fprintf(stderr, "quorumfs: %s: expected `key = value`\n", where);
			rv = QFS_EINVAL;
			break;
		}
		*eq = 0;
		rv = set_option(c, trim(s), trim(eq + 1), where);
	}
	fclose(f);
	return rv;
}

/* Takes the options the daemon handles out of one -o list; keeps the rest. */
static int parse_mount_opts(struct config *c, const char *opts)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	size_t klen = c->kernel_opts ? strlen(c->kernel_opts) : 0;
	int rv = 0;

	if (!copy)
		return QFS_ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && rv == 0; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "consistency=linearizable") == 0) {
			c->consistency = CONSISTENCY_LINEARIZABLE;
		} else if (strcmp(tok, "consistency=serializable") == 0) {
			c->consistency = CONSISTENCY_SERIALIZABLE;
		} else if (strncmp(tok, "consistency=", 12) == 0) {
			fprintf(stderr, "quorumfs: -o %s: want linearizable or serializable\n", tok);
			rv = QFS_EINVAL;
		} else if (strncmp(tok, "attr_timeout=", 13) == 0) {
			char *end;

			c->attr_timeout = strtod(tok + 13, &end);
			if (*end || c->attr_timeout < 0) {
				fprintf(stderr, "quorumfs: -o %s: want seconds >= 0\n", tok);
				rv = QFS_EINVAL;
			}
		} else {
			char *grown;

			if (strcmp(tok, "ro") == 0)
				c->read_only = true;
			if (strcmp(tok, "rw") == 0)
				c->read_only = false;
			grown = realloc(c->kernel_opts, klen + strlen(tok) + 2);
			if (!grown) {
				rv = QFS_ENOMEM;
				break;
			}
			c->kernel_opts = grown;
			klen += (size_t)sprintf(grown + klen, "%s%s", klen ? "," : "", tok);
		}
	}
	free(copy);
	return rv;
}

/* 127.0.0.0/8, ::1 or ::ffff:127.x.x.x. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* --WHAT-cert, --WHAT-key and --WHAT-ca: all three or none. */
static int check_tls_set(const char *what, const char *cert, const char *key, const char *ca)
{
	const char *names[3] = {"cert", "key", "ca"};
	bool set[3] = {cert != NULL, key != NULL, ca != NULL};
	char missing[64] = "";
	size_t n = 0;

	if (set[0] == set[1] && set[1] == set[2])
		return 0;
	for (int i = 0; i < 3; i++)
		if (!set[i])
			n += (size_t)snprintf(missing + n, sizeof(missing) - n, " --%s-%s", what,
					      names[i]);
	fprintf(stderr, "quorumfs: --%s-cert, --%s-key and --%s-ca go together: missing%s\n", what,
		what, what, missing);
	return QFS_EINVAL;
}

/* SPEC §6: certificates come as sets; without them, peers are heard only
 * on loopback unless plain TCP is asked for by name. */
static int check_peer_security(const struct config *c)
{
	int given = !!c->peer_cert + !!c->peer_key + !!c->peer_ca;
	struct sockaddr_storage ss;

	if (check_tls_set("peer", c->peer_cert, c->peer_key, c->peer_ca) ||
	    check_tls_set("client", c->client_cert, c->client_key, c->client_ca))
		return QFS_EINVAL;
	if (given == 3 && c->insecure_plaintext) {
		fprintf(stderr, "quorumfs: --insecure-plaintext contradicts --peer-cert/--peer-key/"
				"--peer-ca: give one or the other\n");
		return QFS_EINVAL;
	}
	if (given == 3 || c->insecure_plaintext || !c->listen_peer)
		return 0;
	if (transport_addr_parse(c->listen_peer, &ss) != 0) {
		fprintf(stderr, "quorumfs: --listen-peer %s: want IPV4:PORT or [IPV6]:PORT\n",
			c->listen_peer);
		return QFS_EINVAL;
	}
	if (!is_loopback(&ss)) {
		fprintf(stderr,
			"quorumfs: --listen-peer %s is not a loopback address: give --peer-cert, "
			"--peer-key and --peer-ca for mutual TLS between members, or "
			"--insecure-plaintext to accept plain TCP from anyone who can reach it\n",
			c->listen_peer);
		return QFS_EINVAL;
	}
	return 0;
}

int config_parse_serve(struct config *c, int argc, char **argv)
{
	int rv = 0;

	for (int i = 1; i < argc && rv == 0; i++) {
		const char *arg = argv[i], *value;
		char key[64];

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			config_usage_serve();
			return 1;
		}
		if (strncmp(arg, "-o", 2) == 0) {
			value = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!value) {
				fprintf(stderr, "quorumfs: -o needs a value\n");
				return QFS_EINVAL;
			}
			rv = parse_mount_opts(c, value);
			continue;
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "quorumfs: unexpected argument '%s' (see quorumfs serve --help)\n",
				arg);
			return QFS_EINVAL;
		}
		arg += 2;
		value = strchr(arg, '=');
		if (value) {
			snprintf(key, sizeof(key), "%.*s", (int)(value - arg), arg);
			value++;
		} else if (flag_is_bool(arg)) {
			snprintf(key, sizeof(key), "%s", arg);
			value = "true";
		} else {
			snprintf(key, sizeof(key), "%s", arg);
			if (i + 1 >= argc) {
				fprintf(stderr, "quorumfs: --%s needs a value\n", key);
				return QFS_EINVAL;
			}
			value = argv[++i];
		}
		if (strcmp(key, "config") == 0)
			rv = read_config_file(c, value);
		else
			rv = set_option(c, key, value, "command line");
	}
	if (rv)
		return rv;
	if (!c->name && (rv = set_option(c, "name", "default", "default")))
		return rv;
	if (!c->data_dir) {
		char dir[4200];

		snprintf(dir, sizeof(dir), "%s.quorumfs", c->name);
		if ((rv = set_option(c, "data-dir", dir, "default")))
			return rv;
	}
	if ((c->initial_cluster || c->join) && !c->listen_peer) {
		fprintf(stderr, "quorumfs: --initial-cluster and --join need --listen-peer\n");
		return QFS_EINVAL;
	}
	if (c->initial_cluster && c->join) {
		fprintf(stderr, "quorumfs: --initial-cluster starts a cluster, --join joins one: "
				"give one of them\n");
		return QFS_EINVAL;
	}
	if (c->election_ms < 2 * c->heartbeat_ms || c->heartbeat_ms == 0) {
		fprintf(stderr, "quorumfs: --election-ms must be at least twice --heartbeat-ms\n");
		return QFS_EINVAL;
	}
	if (c->max_value_bytes == 0 || c->max_value_bytes > (64u << 20)) {
		fprintf(stderr, "quorumfs: --max-value-bytes must be between 1 and 64M\n");
		return QFS_EINVAL;
	}
	if (c->snapshot_entries == 0) {
		fprintf(stderr, "quorumfs: --snapshot-entries must be at least 1\n");
		return QFS_EINVAL;
	}
	return check_peer_security(c);
}
