/*
 * The cluster and data commands of SPEC §2.2 that talk to a member's client
 * port: status, member list/add/remove/promote, leader transfer, get, put,
 * del. Each prints human-readable output (or JSON with -w json) and exits 0,
 * or prints one line to stderr and exits non-zero (2 for usage errors).
 */
#ifndef QFS_CLI_H
#define QFS_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Whether argv[1] of `quorumfs` names one of these commands. */
bool cli_is_command(const char *name);

/* Runs a command; argv[0] is its name. Returns the process exit status. */
int cli_main(int argc, char **argv);

/* One line per command, for `quorumfs --help`. */
void cli_usage_commands(FILE *out);

#endif
