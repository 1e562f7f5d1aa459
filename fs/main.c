/*
 * The `quorumfs` command: subcommand dispatch. `serve` runs a member; the
 * cluster and data commands of SPEC §2.2 arrive with the client port.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "cli.h"
#include "client_port.h"
#include "config.h"
#include "fs.h"
#include "metrics_http.h"
#include "replay.h"
#include "server.h"
#include "service_notify.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: quorumfs COMMAND [ARGS]\n\n"
		     "commands:\n"
		     "  serve                      run a member and mount its tree\n"
		     "  version                    print the version\n");
	cli_usage_commands(out);
	fprintf(out, "\nEach command has --help.\n");
}

static int cmd_serve(int argc, char **argv)
{
	struct config cfg;
	struct server *srv = NULL;
	struct client_port *port = NULL;
	struct metrics_http *mh = NULL;
	struct stream_tls *client_tls = NULL;
	struct fs fs = {0};
	bool mounted = false, clean = true;
	int rv;

	config_init(&cfg);
	rv = config_parse_serve(&cfg, argc, argv);
	if (rv) {
		config_close(&cfg);
		return rv == 1 ? 0 : 2;
	}
	if ((cfg.log_level && qfs_log_set_level(cfg.log_level)) ||
	    (cfg.log_format && qfs_log_set_format(cfg.log_format))) {
		fprintf(stderr, "quorumfs: --log-level takes debug|info|warn|error, "
				"--log-format takes text|json\n");
		config_close(&cfg);
		return 2;
	}
	qfs_log_set_name(cfg.name);
	if (cfg.listen_client && cfg.client_cert) {
		struct stream_tls_config tls = {
		    .cert_file = cfg.client_cert,
		    .key_file = cfg.client_key,
		    .ca_file = cfg.client_ca,
		    .label = "client",
		};

		if ((rv = stream_tls_create(&tls, &client_tls)))
			goto out;
	}
	rv = server_create(&cfg, &srv);
	if (rv)
		goto out;
	if (cfg.listen_client &&
	    (rv = client_port_create(srv, cfg.listen_client, client_tls, &port)))
		goto out;
	if (cfg.metrics_listen && (rv = metrics_http_create(srv, cfg.metrics_listen, &mh)))
		goto out;
	if (cfg.mount) {
		rv = fs_mount(&fs, srv, &cfg);
		if (rv)
			goto out;
		mounted = true;
	}
	LOG_INFO("serving %s, data dir %s%s%s",
		 cfg.initial_cluster || cfg.join ? "as a cluster member" : "a single-member cluster",
		 cfg.data_dir, cfg.mount ? ", mounted at " : "", cfg.mount ? cfg.mount : "");
	if ((rv = service_notify("READY=1")))
		LOG_WARN("cannot tell the service manager this member is ready (NOTIFY_SOCKET): %s",
			 qfs_strerror(rv));
	rv = server_run(srv);
	client_port_close(port);
	port = NULL;
	metrics_http_close(mh);
	mh = NULL;
	if (mounted)
		clean = fs_wait(&fs);
	LOG_INFO("stopped%s", rv ? " after a WAL failure" : "");
	if (!clean) /* FUSE threads may still read the store: leave it to exit() */
		return rv ? 1 : 0;
	if (mounted)
		fs_close(&fs);
out:
	client_port_close(port);
	metrics_http_close(mh);
	if (srv)
		server_destroy(srv);
	stream_tls_destroy(client_tls);
	config_close(&cfg);
	return rv ? 1 : 0;
}

int main(int argc, char **argv)
{
	/* A peer, client or member that closes first fails a write with EPIPE
	 * (the CLI's TLS writes too), instead of killing the process. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "replay-helper") == 0) /* internal: see fs/replay.h */
		return replay_helper_main();
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (cli_is_command(argv[1]))
		return cli_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("quorumfs 0.1\n");
		return 0;
	}
	fprintf(stderr, "quorumfs: unknown command '%s' (see quorumfs --help)\n", argv[1]);
	return 2;
}
