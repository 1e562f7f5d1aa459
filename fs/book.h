/*
 * The address book: for each member id its name, peer address and client
 * address. Replicated state: it changes only by applied entries (MEMBER
 * entries, membership changes) and is saved in snapshots, so every member
 * holds the same book. Raft's configuration says who votes; the book says
 * where they are.
 */
#ifndef QFS_BOOK_H
#define QFS_BOOK_H

#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"

#define BOOK_MAX 16
#define BOOK_STR_MAX 127

struct book_entry {
	uint64_t id;
	char name[BOOK_STR_MAX + 1];
	char peer[BOOK_STR_MAX + 1];
	char client[BOOK_STR_MAX + 1];
};

struct book {
	struct book_entry e[BOOK_MAX];
	size_t n;
};

/* Adds or updates id; empty strings keep what is known. QFS_ENOSPC if full,
 * QFS_EINVAL for strings that do not fit. */
int book_set(struct book *b, uint64_t id, const char *name, const char *peer, const char *client);
void book_remove(struct book *b, uint64_t id);
const struct book_entry *book_find(const struct book *b, uint64_t id);
const struct book_entry *book_find_name(const struct book *b, const char *name);

void book_encode(const struct book *b, struct qbuf *out);
/* Replaces b from untrusted bytes; QFS_EMSG leaves b unchanged. */
int book_decode(struct book *b, struct qreader *r);

#endif
