/*
 * The cluster and data commands of SPEC §2.2 that talk to a member's client
 * port: status, member list/add/remove/promote, leader transfer, get, put
 * (--ttl, --lease), del, watch, lease grant/keepalive/revoke/list, snapshot
 * save; and the offline ones on local files: snapshot restore, check,
 * dump-wal. Each prints human-readable output (or JSON with -w json) and
 * exits 0, or prints one line to stderr and exits non-zero (2 for usage
 * errors).
 */
#ifndef QFS_CLI_H
#define QFS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Whether argv[1] of `quorumfs` names one of these commands. */
bool cli_is_command(const char *name);

/* Runs a command; argv[0] is its name. Returns the process exit status. */
int cli_main(int argc, char **argv);

struct client_tls; /* client_tls.h */

/*
 * For `serve --join`: asks the cluster at endpoints ("HOST:PORT,...", client
 * ports; over TLS unless tls is NULL) to add a learner, following NOTLEADER
 * to the leader. Blocks up to timeout_ms; call before the member's loop
 * runs. Returns 0, the member's refusal (QFS_EEXIST: a member of that name
 * is already there, as after a restart; QFS_EBUSY, QFS_ETIMEDOUT, ...) or
 * QFS_EIO when no member answered, with one line of explanation in err
 * (NUL-terminated, "" on success).
 */
int cli_member_add_learner(const char *endpoints, struct client_tls *tls, const char *name,
			   const char *peer_addr, const char *client_addr, uint64_t timeout_ms,
			   char *err, size_t errlen);

/* For `serve --join`: calls cb for each member of the cluster at endpoints
 * (MEMBER_LIST), so a joining member knows where its peers are before its
 * log tells it. Same returns as cli_member_add_learner(). */
int cli_member_peers(const char *endpoints, struct client_tls *tls, uint64_t timeout_ms,
		     void (*cb)(void *arg, uint64_t id, const char *name, const char *peer,
				const char *client),
		     void *arg, char *err, size_t errlen);

/* One line per command, for `quorumfs --help`. */
void cli_usage_commands(FILE *out);

#endif
