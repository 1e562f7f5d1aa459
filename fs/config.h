/*
 * `quorumfs serve` configuration: command-line flags, the same keys from a
 * --config file (`key = value` lines, '#' comments), and the -o mount
 * options the daemon interprets itself (the rest go to the kernel).
 */
#ifndef QFS_CONFIG_H
#define QFS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum consistency { CONSISTENCY_LINEARIZABLE, CONSISTENCY_SERIALIZABLE };

struct config {
	char *name;
	char *data_dir;
	char *mount;           /* NULL: serve without a mount */
	char *kernel_opts;     /* -o options passed to FUSE/the kernel */
	char *listen_peer, *listen_client, *initial_cluster, *join, *metrics_listen;
	char *log_level, *log_format, *cluster_token;
	char *peer_cert, *peer_key, *peer_ca; /* all or none: peer mutual TLS */
	char *client_cert, *client_key, *client_ca; /* all or none: client port TLS */
	bool insecure_plaintext;	      /* plain peer TCP off loopback */
	uint64_t heartbeat_ms, election_ms, request_timeout_ms;
	uint64_t snapshot_entries, quota_bytes, max_value_bytes, auto_compact_revisions;
	/* Mount options interpreted by the daemon. */
	enum consistency consistency;
	double attr_timeout;
	bool read_only;
};

/* Fills defaults. */
void config_init(struct config *c);
void config_close(struct config *c);

/*
 * Parses `serve` arguments (argv[0] is "serve"). Returns 0, 1 when --help
 * was printed, or QFS_EINVAL after printing one clear line to stderr.
 */
int config_parse_serve(struct config *c, int argc, char **argv);

void config_usage_serve(void);

#endif
