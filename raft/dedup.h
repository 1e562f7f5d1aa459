/*
 * Exactly-once application of retried proposals. Every store entry carries
 * (origin member id, request id) in its header (store/entry.h); a proposer
 * that times out retries with the same pair, so the log may hold the entry
 * twice. The applier asks raft_dedup_check() before store_apply(): it says
 * whether this pair is new, and remembers it.
 *
 * The table is part of the replicated state: it must change only through
 * applied entries and be saved in and loaded from the state machine
 * snapshot (raft_dedup_encode/decode), so every member decides the same.
 *
 * Per origin it keeps the highest request id seen and a 64-id window below
 * it. Request ids must grow per origin (a counter); an id more than 64
 * below the highest is treated as already applied (its proposer gave up
 * long ago and got a timeout, not a silent success).
 */
#ifndef QFS_RAFT_DEDUP_H
#define QFS_RAFT_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"

#define RAFT_DEDUP_WINDOW 64
#define RAFT_DEDUP_MAX_ORIGINS 65536 /* bound for decoding */

struct raft_dedup_origin {
	uint64_t origin;
	uint64_t max_id; /* highest request id applied */
	uint64_t window; /* bit i: max_id - i applied */
};

struct raft_dedup {
	struct raft_dedup_origin *o; /* sorted by origin; owned */
	size_t n, cap;
};

void raft_dedup_init(struct raft_dedup *d);
void raft_dedup_close(struct raft_dedup *d);
/* 1: new (now recorded), 0: duplicate, QFS_ENOMEM. request_id 0 is never
 * deduplicated (always 1, not recorded). */
int raft_dedup_check(struct raft_dedup *d, uint64_t origin, uint64_t request_id);
int raft_dedup_encode(const struct raft_dedup *d, struct qbuf *out);
/* Replaces d's contents; QFS_EMSG on malformed input (d unchanged). */
int raft_dedup_decode(struct raft_dedup *d, struct qreader *rd);

#endif
