/*
 * Committed entries: the bytes that are logged, replicated and then applied
 * by store_apply(). One entry is one state change request.
 *
 * Layout (little-endian), fixed header then a body per type:
 *   u8 format version (ENTRY_VERSION) | u8 type | u64 origin member id |
 *   u64 request id | i64 time_ns | body
 * time_ns sits at a fixed offset so the orderer (the leader) can stamp its
 * clock into an encoded entry without decoding it (entry_stamp_time).
 *
 * TXN body: u32 ncmps, cmps; u32 nthen, ops; u32 nelse, ops.
 *   cmp: u8 target, u8 op, bytes key, u64 num, bytes value
 *   op:  u8 type, u32 flags, bytes key, u8 ftype, u32 mode, u32 uid, u32 gid,
 *        i64 mtime_ns, bytes value, bytes dst, bytes xname, u64 lease_id,
 *        i64 ttl_ms, u64 lease_gen
 *   (every op carries every field; lease ops other than ATTACH have key "")
 *   ("bytes" = u32 length + data; strings carry no NUL)
 * COMPACT body: u64 revision (history before it is dropped).
 * MEMBER body: u64 member id, bytes name, bytes peer address, bytes client
 *   address: a member publishing where it listens. Not for the store
 *   (store_apply leaves the keys alone); the daemon keeps the address book.
 * AUTH body: u8 op, bytes name, bytes arg, u8 perm: a change of users and
 *   roles (fs/auth.h says what they mean). Not for the store either; the
 *   daemon keeps the users and roles. Strings may be empty.
 */
#ifndef QFS_ENTRY_H
#define QFS_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"
#include "store.h"

#define ENTRY_VERSION 2 /* 2: lease fields in ops; 1 is not read */
#define ENTRY_HEADER_SIZE 26
#define ENTRY_TIME_OFFSET 18
#define ENTRY_MAX_OPS 65535 /* per branch, and compares */

enum entry_type { ENTRY_TXN = 1, ENTRY_COMPACT = 2, ENTRY_MEMBER = 3, ENTRY_AUTH = 4 };

struct entry_member {
	uint64_t id;
	const char *name, *peer, *client; /* NUL-terminated; "" when unknown */
};

struct entry_auth {
	uint8_t op;
	const char *name, *arg; /* NUL-terminated, "" for none */
	uint8_t perm;
};

struct entry {
	enum entry_type type;
	uint64_t origin;     /* member id of the proposer */
	uint64_t request_id; /* unique per origin: matches results, dedupes retries */
	int64_t time_ns;     /* orderer's wall clock: commit time of the change */
	struct store_txn txn;   /* ENTRY_TXN */
	uint64_t compact_rev;   /* ENTRY_COMPACT */
	struct entry_member member; /* ENTRY_MEMBER */
	struct entry_auth auth;	    /* ENTRY_AUTH */
};

/* Appends the encoding of e to out. Returns 0, QFS_EINVAL (NULL key on an op that
 * needs one, too many ops) or QFS_ENOMEM. */
int entry_encode(const struct entry *e, struct qbuf *out);

/*
 * Decodes an entry. On success *out is one heap allocation that owns every
 * string and value it points to (free() it). Every length is checked before
 * use; anything malformed gives QFS_EMSG and no allocation.
 */
int entry_decode(const uint8_t *p, size_t len, struct entry **out);

/* Overwrites time_ns in an encoded entry. QFS_EMSG if too short. */
int entry_stamp_time(uint8_t *p, size_t len, int64_t time_ns);

#endif
