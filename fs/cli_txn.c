/*
 * `quorumfs txn`: a compare-and-swap / multi-key transaction in etcdctl's
 * txn style. The text comes from stdin (txn_text.h says what it looks
 * like); on a terminal it is asked for block by block, as etcdctl -i does,
 * and ends with the third blank line. It goes to a member as one TXN
 * request: one revision, all or nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "cli_impl.h"
#include "txn_text.h"

const char cli_txn_details[] =
    "Reads from stdin three blocks, each ended by a blank line (or the end\n"
    "of the input): compares, the requests run when every compare holds\n"
    "(success), the requests run otherwise (failure). Compares and the\n"
    "branch's requests are one transaction: one revision, all or nothing.\n"
    "\n"
    "compares, one a line (also val, ver, c, m; operators = != > <):\n"
    "  value(\"/k\") = \"v\"       the value, bytewise; false if /k is absent\n"
    "  version(\"/k\") = \"3\"     writes since created; 0 if absent\n"
    "  create(\"/k\") = \"0\"      revision that created it; 0 if absent\n"
    "  mod(\"/k\") > \"12\"        revision of its last change; 0 if absent\n"
    "requests, one a line:\n"
    "  put KEY VALUE           as quorumfs put (creates parent dirs)\n"
    "  del [--prefix] KEY      as quorumfs del; an absent KEY fails the txn\n"
    "Quote a key or value with spaces: put /k \"a b\" (escapes \\\" \\\\ \\n \\t\n"
    "\\r \\xHH). get is not supported in a txn: the store's transactions\n"
    "compare and write, they do not read (use quorumfs get). At most 128\n"
    "compares and 128 requests a branch.\n"
    "\n"
    "  printf 'create(\"/lock\") = \"0\"\\n\\nput /lock me\\n\\n' | quorumfs txn\n"
    "\n"
    "Prints SUCCESS or FAILURE (which branch ran), then a line per request\n"
    "of that branch with the transaction's revision; -w json: {\"succeeded\",\n"
    "\"revision\", \"results\"}. A request that fails (del of an absent key,\n"
    "put on a directory, over quota) changes nothing and exits 1 naming it;\n"
    "a line that does not parse exits 1 naming its number.\n";

static bool line_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

/* On a terminal: etcdctl's prompts on stderr; the third blank line ends
 * the input. */
static int read_tty(const struct cli *c, uint8_t **out, size_t *len)
{
	static const char *const prompts[] = {
	    "compares:", "success requests (put, del):", "failure requests (put, del):"};
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int blank = 0, rv = 0;
	struct qbuf b;

	qbuf_init(&b);
	fprintf(stderr, "%s\n", prompts[0]);
	while (blank < 3 && (n = getline(&line, &cap, stdin)) > 0) {
		qbuf_put(&b, line, (size_t)n);
		if (b.len > CLIENT_PROTO_MAX_PAYLOAD) {
			rv = cli_fail(c, "input larger than any member accepts");
			break;
		}
		if (line_blank(line, (size_t)n) && ++blank < 3)
			fprintf(stderr, "%s\n", prompts[blank]);
	}
	free(line);
	if (!rv && ferror(stdin))
		rv = cli_fail(c, "reading stdin failed");
	if (!rv && qbuf_error(&b))
		rv = cli_fail(c, "out of memory reading stdin");
	if (rv) {
		qbuf_close(&b);
		return rv;
	}
	*out = qbuf_take(&b, len);
	if (!*out)
		*len = 0;
	return 0;
}

static void print_result(const struct cli *c, const struct client_txn_op *o, uint64_t rev,
			 bool first)
{
	if (!c->json) {
		printf("OK revision=%" PRIu64 "\n", rev);
		return;
	}
	printf("%s{\"op\": \"%s\", \"key\": ", first ? "" : ", ",
	       o->type == CLIENT_TXN_PUT ? "put" : "del");
	cli_json_str(o->key);
	if (o->flags & CLIENT_DEL_PREFIX)
		printf(", \"prefix\": true");
	printf(", \"revision\": %" PRIu64 "}", rev);
}

int cli_txn_run(struct cli *c)
{
	struct client_req r = {.type = CLIENT_REQ_TXN};
	char err[CLIENT_ERR_MAX];
	struct client_answer a;
	struct txn_text t;
	uint8_t *input = NULL;
	size_t len = 0, k, n;
	int rv;

	rv = isatty(0) ? read_tty(c, &input, &len) : cli_stdin_read(c, &input, &len);
	if (rv)
		return rv;
	rv = txn_text_parse(input ? (const char *)input : "", len, &t, err, sizeof(err));
	if (rv) {
		free(input);
		return cli_fail(c, "%s", err);
	}
	r.cmps = t.cmps;
	r.ncmps = t.ncmps;
	r.then_ops = t.ops[0];
	r.nthen = t.nops[0];
	r.else_ops = t.ops[1];
	r.nelse = t.nops[1];
	rv = cli_ask(c, &r, &a);
	free(input);
	if (rv) {
		txn_text_free(&t);
		return 1;
	}
	k = a.resp.succeeded ? 0 : 1;
	n = t.nops[k];
	if (c->json)
		printf("{\"succeeded\": %s, \"revision\": %" PRIu64 ", \"results\": [",
		       a.resp.succeeded ? "true" : "false", a.resp.revision);
	else
		printf("%s\n", a.resp.succeeded ? "SUCCESS" : "FAILURE");
	for (size_t i = 0; i < n; i++)
		print_result(c, &t.ops[k][i], a.resp.revision, i == 0);
	if (c->json)
		printf("]}\n");
	client_answer_free(&a);
	txn_text_free(&t);
	return 0;
}
