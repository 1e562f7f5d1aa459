/*
 * The text `quorumfs txn` reads, in etcdctl's txn style: three blocks, each
 * ended by a blank line (or the end of the input): compares, the requests
 * run when every compare holds, the requests run otherwise.
 *
 *   mod("/config/db") > "12"          value("/k") = "v"   version("/k") != "3"
 *   create("/lock") = "0"             (also val, ver, c, m; = == != > <)
 *
 *   put /lock "owner 1"               put KEY VALUE
 *   del /old                          del [--prefix] KEY
 *
 * Keys and values are one word each, or quoted ("a b") with the escapes
 * \" \\ \n \t \r \xHH. Numbers (version, create, mod) may be quoted or not.
 * get is refused: the store's transactions do not read.
 *
 * Pure: no IO, so the unit tests compile it in (tests/unit/test_txn_text.c).
 * The CLI (cli_txn.c) reads stdin and sends the result as a TXN request.
 */
#ifndef QFS_TXN_TEXT_H
#define QFS_TXN_TEXT_H

#include <stddef.h>

#include "client_proto.h"

/* A parsed transaction. Keys (NUL-terminated) and values point into
 * arena_, which the struct owns with the arrays: txn_text_free(). */
struct txn_text {
	struct client_cmp *cmps;
	size_t ncmps;
	struct client_txn_op *ops[2]; /* [0]: success, [1]: failure */
	size_t nops[2];
	char *arena_; /* private */
};

/*
 * Parses text[0..len) (it need not be NUL-terminated). 0, QFS_EINVAL with
 * one line in err naming the line number and what was expected there, or
 * QFS_ENOMEM. At most CLIENT_PROTO_TXN_MAX compares and requests per
 * branch; keys are absolute, at most STORE_KEY_MAX bytes, without NUL.
 * Nothing to free after an error.
 */
int txn_text_parse(const char *text, size_t len, struct txn_text *out, char *err, size_t errlen);

/* Frees what txn_text_parse() allocated; safe on a zeroed struct, twice. */
void txn_text_free(struct txn_text *t);

#endif
