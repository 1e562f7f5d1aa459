/*
 * Private to the cli*.c files: what the command line (cli.c) hands each
 * command and the helpers they share. cli.h is the public side (main.c,
 * serve --join). Who owns what:
 *   cli.c         the command table, flag parsing, usage text, errors, the
 *                 request/answer helper, JSON output and key checks;
 *   cli_status.c  status;
 *   cli_member.c  member list/add/remove/promote, leader transfer, and the
 *                 serve --join requests of cli.h;
 *   cli_kv.c      get, put, del;
 *   cli_txn.c     txn (the text it reads is parsed by txn_text.c);
 *   cli_compact.c compact;
 *   cli_watch.c   watch;
 *   cli_lease.c   lease grant/keepalive/revoke/list and the TTL and lease
 *                 id syntax (also used by put --ttl/--lease);
 *   cli_auth.c    user, role and auth: users and roles;
 *   cli_snapshot.c  snapshot save (a backup streamed from a member);
 *   cli_restore.c   snapshot restore (a new data dir from a backup);
 *   cli_check.c     check (a data dir verified offline);
 *   cli_dump.c      dump-wal (a data dir's snapshots and WAL, decoded);
 *   cli_image.c     what the offline commands share: snapshot and backup
 *                   files read whole, data dirs opened for reading.
 * Everything prints to stdout and stderr; nothing here is thread-safe.
 */
#ifndef QFS_CLI_IMPL_H
#define QFS_CLI_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/snapfile.h"
#include "client.h"
#include "client_proto.h"
#include "image.h"

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
	FL_DATA_DIR = 0x200,
	FL_NAME = 0x400,
	FL_INITIAL_CLUSTER = 0x800,
	FL_OFFLINE = 0x1000, /* works on local files: no --endpoints, no --timeout-ms */
};
/* Flags that must be given wherever a command takes them. */
#define FL_REQUIRED (FL_DATA_DIR | FL_NAME)

struct cli;

/* One row of the command table (cli.c); all strings are static. */
struct command {
	const char *name, *sub;
	int nargs;
	unsigned flags;
	const char *args_usage, *help;
	int (*run)(struct cli *c); /* the exit status: 0, 1, or 2 for a usage error */
};

/*
 * A parsed command line, owned by cli_main() for the run of one command.
 * client_addr and args point into argv; cli_main() closes eps after run.
 */
struct cli {
	const struct command *cmd;
	char what[160]; /* "put /a": how errors start */
	struct client_endpoints eps;
	bool json;
	bool prefix, learner, voter;
	uint64_t rev;
	const char *client_addr;
	const char *cacert, *cert, *key; /* TLS to the client ports */
	const char *args[3];
	int64_t ttl_ms;	   /* put --ttl */
	uint64_t lease_id; /* put --lease */
	bool once;	   /* lease keepalive --once */
	const char *data_dir, *name, *initial_cluster; /* snapshot restore */
};

/* ---- cli.c: errors and requests ---- */

/* Prints "quorumfs: WHAT: MSG" to stderr; returns 1 (the exit status). */
int cli_fail(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The error line for a member's refusal; returns 1. */
int cli_fail_resp(const struct cli *c, const struct client_resp *r);

/* client_request() to c->eps and the error line in one: 0 with a
 * successful answer in *a (the caller frees it: client_answer_free), or 1
 * with the error printed and nothing to free. */
int cli_ask(const struct cli *c, const struct client_req *r, struct client_answer *a);

/* 0 if key is absolute, else prints why not and returns 1. */
int cli_key_check(const struct cli *c, const char *key);

/* The whole of stdin into *out (the caller frees it), refusing more than
 * any member could take: 0, or 1 with the error printed. */
int cli_stdin_read(const struct cli *c, uint8_t **out, size_t *len);

/* ---- cli.c: output ---- */

/* s as a quoted JSON string on stdout. */
void cli_json_str(const char *s);

/* p[0..n) on one line on stdout: backslash, newline, tab, CR as \\ \n \t
 * \r, other control bytes as \xHH. */
void cli_print_escaped(const uint8_t *p, size_t n);

/* p[0..n) as a quoted base64 JSON string on stdout. */
void cli_json_base64(const uint8_t *p, size_t n);

/* 1536 as "1.5KiB" (B, KiB, MiB, GiB, TiB), into buf. Returns buf. */
const char *cli_human_size(uint64_t v, char *buf, size_t len);

/* "dir", "symlink" or "file" for a STORE_* node type. */
const char *cli_type_name(uint8_t t);

/* ---- cli_lease.c: argument syntax ---- */

/* Seconds ("10", "2.5") into milliseconds; 0, or -1 if not a TTL. */
int cli_lease_ttl_parse(const char *s, int64_t *ms);

/* A lease id in hex (optional 0x), not 0; 0, or -1 if not one. */
int cli_lease_id_parse(const char *s, uint64_t *id);

/* ---- cli_image.c: snapshot and backup files, and data dirs (offline) ---- */

/* A snapshot or backup file read whole: verified (CRCs, lengths), its image
 * decoded and its store loaded aside, so what a member would start from is
 * known to load. */
struct cli_image {
	struct snapfile_info info; /* index, term, raw and compressed sizes */
	struct image img;	   /* members and book; img.store points into raw */
	uint8_t *raw;		   /* the image, owned */
	size_t raw_len;
	uint64_t revision, compacted, keys, leases;
};

/* 0, or a QFS_E* code with one line in err naming the file. */
int cli_image_load(const char *path, struct cli_image *ci, char *err, size_t errlen);
void cli_image_close(struct cli_image *ci);

/* A member's name in the image's book, else its id in hex (into buf). */
const char *cli_image_member_name(const struct cli_image *ci, uint64_t id, char *buf, size_t len);

/* Opens DATA_DIR for reading (datadir_lock_shared): 0 with *fd the shared
 * lock (-1: none), or the exit status after printing why. A member running
 * there is refused, or with live_ok only warned about (*fd -1). */
int cli_datadir_open(const struct cli *c, const char *dir, bool live_ok, int *fd);

/* ---- the commands (struct command.run) and their --help details ---- */

int cli_status_run(struct cli *c);
int cli_member_list_run(struct cli *c);
int cli_member_change_run(struct cli *c); /* member add/remove/promote, leader transfer */
int cli_kv_get_run(struct cli *c);
int cli_kv_write_run(struct cli *c); /* put and del */
int cli_txn_run(struct cli *c);
int cli_compact_run(struct cli *c);
int cli_watch_run(struct cli *c);
int cli_lease_grant_run(struct cli *c);
int cli_lease_keepalive_run(struct cli *c);
int cli_lease_revoke_run(struct cli *c);
int cli_lease_list_run(struct cli *c);
int cli_snapshot_save_run(struct cli *c);
int cli_restore_run(struct cli *c); /* snapshot restore */
int cli_check_run(struct cli *c);
int cli_dump_run(struct cli *c); /* dump-wal */
int cli_auth_change_run(struct cli *c); /* user/role changes, auth enable/disable */
int cli_auth_list_run(struct cli *c);	/* user list, role list, auth status */

/* What `watch --help`, `lease keepalive --help`, ... add to the usage line. */
extern const char cli_watch_details[];
extern const char cli_lease_keepalive_details[];
extern const char cli_snapshot_save_details[];
extern const char cli_restore_details[];
extern const char cli_check_details[];
extern const char cli_txn_details[];
extern const char cli_compact_details[];
extern const char cli_auth_details[];

#endif
