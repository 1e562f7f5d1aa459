/*
 * `quorumfs compact REV`: drops the history before revision REV on every
 * member (through the log, as --auto-compact-revisions does). Reads at a
 * revision below REV, watches from one and /.quorumfs/rev/N below it fail
 * from then on; REV itself and everything after it stay readable.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_impl.h"

const char cli_compact_details[] =
    "REV is a revision from 1 to the current one (quorumfs status shows it).\n"
    "Afterwards the oldest readable revision is REV: get --rev, watch --rev\n"
    "and /.quorumfs/rev/N below it fail; the latest value of every key stays.\n"
    "A REV past the current revision, or at or below the compacted one, is\n"
    "refused and changes nothing. Members also compact on their own, keeping\n"
    "the last --auto-compact-revisions revisions. Prints the compacted\n"
    "revision; -w json: {\"compacted_revision\": REV}.\n";

int cli_compact_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_COMPACT};
	struct client_answer a;
	const char *s = c->args[0];
	char *end;

	errno = 0;
	r.rev = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || r.rev == 0) {
		fprintf(stderr, "quorumfs: compact: REV wants a revision >= 1, got '%s'\n", s);
		return 2;
	}
	if (cli_ask(c, &r, &a))
		return 1;
	if (c->json)
		printf("{\"compacted_revision\": %" PRIu64 "}\n", a.resp.revision);
	else
		printf("compacted revision %" PRIu64 "\n", a.resp.revision);
	client_answer_free(&a);
	return 0;
}
