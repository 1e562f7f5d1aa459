/*
 * Client protocol: the frames `quorumfs status/member/get/put/del/txn/compact/
 * watch/lease/snapshot save` exchange with a member's --listen-client port. Pure
 * encoders and decoders, no sockets: fs/client_port.c serves them,
 * fs/client.c and fs/cli*.c send them.
 *
 * A connection carries requests and their responses strictly in turn: one
 * request, then its response, then the next request. WATCH is the exception:
 * it turns the connection into a stream of WATCH responses that ends only
 * with an error response (or the connection); the client sends nothing more.
 * SNAPSHOT is answered by several frames too (see below), after which the
 * connection takes requests again.
 *
 * Frame (little-endian), CLIENT_PROTO_HDR_SIZE header then payload:
 *   u32 magic (CLIENT_PROTO_MAGIC, "QFSC")   u8 version (CLIENT_PROTO_VERSION)
 *   u8 type                                  u16 reserved (sent as 0, ignored)
 *   u32 payload length                       u32 CRC32 (zlib) of the payload
 * A request has type 1..CLIENT_REQ_MAX_; its response has the same type with
 * CLIENT_PROTO_RESPONSE set. A reader checks magic, version, type and the
 * length bound before allocating for the payload, and the CRC before
 * parsing it. Anything malformed ends the connection.
 *
 * Payloads use "str": u32 length (NUL included) + bytes ending in the only
 * NUL, so decoded strings point into the payload without a copy, and
 * "bytes": u32 length + data.
 *
 * Requests:
 *   STATUS                       (empty)
 *   MEMBER_LIST                  u32 flags
 *   MEMBER_ADD                   str name, str peer addr, str client addr, u8 learner
 *   MEMBER_REMOVE/PROMOTE,
 *   LEADER_TRANSFER              str name
 *   GET                          str key, u32 flags, u64 rev, str after
 *   PUT                          str key, bytes value
 *   DEL                          str key, u32 flags
 *   WATCH                        str key, u32 flags, u64 start revision (0 = the
 *                                next revision the member applies)
 *   LEASE_GRANT                  i64 ttl ms (the member picks the id)
 *   LEASE_RENEW, LEASE_REVOKE    u64 lease id
 *   LEASE_LIST                   u32 flags, u64 after (a lease id, 0 = from the first)
 *   PUT_LEASE                    str key, bytes value, u64 lease id, i64 ttl ms:
 *                                a PUT that also attaches the key to lease id
 *                                (ttl 0), or to a new lease of that ttl (id 0),
 *                                in one transaction
 *   SNAPSHOT                     (empty)
 *   TXN                          u32 n, n x compare, u32 n, n x request (the
 *                                success branch), u32 n, n x request (failure)
 *       compare:                 u8 target, u8 op, str key, u64 number, bytes
 *                                value (a VALUE compare has number 0, the others
 *                                an empty value)
 *       request:                 u8 type (PUT or DEL), u32 flags (DEL:
 *                                CLIENT_DEL_PREFIX), str key, bytes value
 *                                (empty for DEL)
 *   COMPACT                      u64 revision (history before it is dropped)
 *   AUTH_CHANGE                  u8 op, str name, str arg, u8 perm: a change of
 *                                users and roles (fs/auth.h: enum auth_op)
 *   AUTH_LIST                    (empty)
 * Response: i32 status (0 or a QFS_E* code), then
 *   on error:                    str message, str leader name, str leader
 *                                client addr (both "" unless NOTLEADER and known)
 *   STATUS:                      str name, u64 member id, u64 cluster id, str role,
 *                                u64 term, commit, applied, leader id, str leader
 *                                name, u64 revision, compacted, db size, quota,
 *                                keys, snapshot index
 *   MEMBER_LIST:                 u32 n, n x (u64 id, str name, str peer, str
 *                                client, u8 voter, u8 leader)
 *   MEMBER_*, LEADER_TRANSFER:   (empty)
 *   GET:                         u64 revision read, u8 more, u32 n, n x (str key,
 *                                u8 type, u32 mode, u64 create, mod, version,
 *                                bytes value)
 *   PUT, DEL, LEASE_REVOKE:      u64 revision
 *   LEASE_GRANT, LEASE_RENEW:    u64 lease id, i64 ttl ms
 *   PUT_LEASE:                   u64 revision, u64 lease id
 *   TXN:                         u8 succeeded (the compares held: the success
 *                                branch ran), u64 revision (the one the
 *                                transaction made, or the current one when its
 *                                branch changed nothing)
 *   COMPACT:                     u64 revision (the compacted revision, as asked)
 *   AUTH_CHANGE:                 (empty)
 *   AUTH_LIST:                   bytes users and roles (auth_encode: the
 *                                client decodes them with auth_decode)
 *   LEASE_LIST:                  u64 revision read, u8 more, u32 n, n x (u64 id,
 *                                i64 ttl ms, i64 remaining ms, u64 keys attached,
 *                                u32 k, k x str key)
 *   WATCH:                       u64 progress, u32 n, n x (u8 event type, u64
 *                                revision, str key, u8 type, u32 mode, u64
 *                                create, mod, version, bytes value)
 *   SNAPSHOT:                    u64 index, term, revision, keys, leases, u64
 *                                total length, u32 CRC32 of the whole image,
 *                                u64 offset, bytes chunk
 *
 * GET pages: a response holds about CLIENT_PROTO_PAGE_BYTES of keys (always
 * at least one). With `more` set the client asks again at the revision the
 * first page reported, with `after` = the last key it got; keys come in
 * store_range() order, so the pages of one revision never overlap.
 *
 * TXN is one store transaction (store.h): every compare, then the ops of the
 * branch they choose, all at one revision or not at all. It has at most
 * CLIENT_PROTO_TXN_MAX compares and as many requests in each branch; the
 * decoder checks every count against that and against what the payload can
 * hold before it allocates, and refuses unknown targets, operators, request
 * types and flags, and a compare or DEL carrying what it cannot use. A
 * failed request is an error response naming it; nothing changed then.
 *
 * PUT_LEASE is a request type of its own rather than fields added to PUT:
 * fields a PUT might or might not carry would make a PUT cut short at
 * their boundary a valid frame, and PUT's layout stays what version 1
 * clients send.
 *
 * LEASE_LIST pages like GET, by lease id: with `more` set the client asks
 * again with `after` = the last id it got. Each page is its own read (leases
 * come and go between pages). Keys are sent only with CLIENT_LEASE_LIST_KEYS,
 * at most CLIENT_PROTO_LEASE_KEY_BYTES of them per lease; the count of keys
 * attached is always exact, so a client can tell when the list was cut.
 *
 * WATCH stream: events come in store_events() order (revision, then key),
 * each exactly once, with no revision skipped. `progress` P promises that
 * every matching event with a revision <= P has been sent (in this frame or
 * an earlier one), so a client that lost the stream resumes with start
 * revision P + 1. A revision with more events than a frame holds is cut
 * across frames: a frame may end with some events of revision P + 1 (never
 * later ones), and a client resuming at P + 1 skips as many of its events
 * as it already has (their order is fixed). The first frame has no events and P = start - 1 (for
 * start 0: the member's revision when the watch began): the watch is
 * established. A DELETE event carries the key's last version before the
 * delete, with an empty value. An error response (a compacted start, a
 * watcher cancelled for falling behind) ends the stream.
 *
 * SNAPSHOT: the member takes a read point (linearizable), then an image of
 * its replicated state at its applied index (fs/image.h: what a snapshot
 * file holds) and sends it in chunks of at most CLIENT_PROTO_SNAPSHOT_CHUNK
 * bytes, one response frame each, in order, the first at offset 0, until a
 * chunk ends at the total length (an empty image: one empty chunk). Every
 * frame repeats the image's description (its index and term, the store's
 * revision, live keys and leases, the total length and a CRC32 of all of
 * it), so a client checks each against the first and the assembled image
 * against the CRC. An error response comes instead of the first frame,
 * never after it; a member that cannot go on closes the connection.
 */
#ifndef QFS_CLIENT_PROTO_H
#define QFS_CLIENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"

#define CLIENT_PROTO_MAGIC 0x43534651u /* "QFSC" on the wire */
#define CLIENT_PROTO_VERSION 1
#define CLIENT_PROTO_HDR_SIZE 16
#define CLIENT_PROTO_RESPONSE 0x80
/* Room for a key, the names and the fields around a value. */
#define CLIENT_PROTO_HEADROOM (64u << 10)
/* The largest payload anyone accepts: the largest --max-value-bytes (64M)
 * plus headroom. A member bounds requests tighter (its own max value). */
#define CLIENT_PROTO_MAX_PAYLOAD ((64u << 20) + CLIENT_PROTO_HEADROOM)
/* Soft size of a GET or LEASE_LIST page. */
#define CLIENT_PROTO_PAGE_BYTES (1u << 20)
/* Most key bytes LEASE_LIST sends for one lease. */
#define CLIENT_PROTO_LEASE_KEY_BYTES (16u << 20)
/* Image bytes in one SNAPSHOT frame. */
#define CLIENT_PROTO_SNAPSHOT_CHUNK (1u << 20)

/* String bounds (bytes, NUL excluded) enforced by the decoders. */
#define CLIENT_PROTO_KEY_MAX 8191 /* over STORE_KEY_MAX: the store says why */
#define CLIENT_PROTO_NAME_MAX 127 /* member names (SERVER_NAME_MAX) */
#define CLIENT_PROTO_ADDR_MAX 127 /* addresses (SERVER_ADDR_MAX) */
#define CLIENT_PROTO_MSG_MAX 1023 /* error messages, roles */

enum client_req_type {
	CLIENT_REQ_STATUS = 1,
	CLIENT_REQ_MEMBER_LIST,
	CLIENT_REQ_MEMBER_ADD,
	CLIENT_REQ_MEMBER_REMOVE,
	CLIENT_REQ_MEMBER_PROMOTE,
	CLIENT_REQ_LEADER_TRANSFER,
	CLIENT_REQ_GET,
	CLIENT_REQ_PUT,
	CLIENT_REQ_DEL,
	CLIENT_REQ_WATCH,
	CLIENT_REQ_LEASE_GRANT,
	CLIENT_REQ_LEASE_RENEW,
	CLIENT_REQ_LEASE_REVOKE,
	CLIENT_REQ_LEASE_LIST,
	CLIENT_REQ_PUT_LEASE,
	CLIENT_REQ_SNAPSHOT,
	CLIENT_REQ_TXN,
	CLIENT_REQ_COMPACT,
	CLIENT_REQ_AUTH_CHANGE,
	CLIENT_REQ_AUTH_LIST,
	CLIENT_REQ_MAX_ = CLIENT_REQ_AUTH_LIST,
};

#define CLIENT_GET_PREFIX 0x1	   /* the key's whole subtree */
#define CLIENT_DEL_PREFIX 0x1	   /* the key and its whole subtree */
#define CLIENT_MEMBERS_LINEARIZABLE 0x1 /* MEMBER_LIST after a read point */
#define CLIENT_WATCH_PREFIX 0x1	   /* the key and its whole subtree */
#define CLIENT_LEASE_LIST_KEYS 0x1 /* with the keys attached to each lease */

/* Compares, and requests in each branch, of one TXN (etcd's default
 * --max-txn-ops). */
#define CLIENT_PROTO_TXN_MAX 128

/* TXN compares: the values of enum store_cmp_target and store_cmp_op. */
enum client_cmp_target {
	CLIENT_CMP_VALUE = 1,
	CLIENT_CMP_VERSION,
	CLIENT_CMP_CREATE,
	CLIENT_CMP_MOD,
};
enum client_cmp_op { CLIENT_CMP_EQ = 1, CLIENT_CMP_NE, CLIENT_CMP_LT, CLIENT_CMP_GT };

/* TXN requests. */
enum client_txn_op_type { CLIENT_TXN_PUT = 1, CLIENT_TXN_DEL };

/* WATCH event types (the values of enum store_event_type). */
enum client_event_type { CLIENT_EVENT_PUT = 1, CLIENT_EVENT_DELETE = 2 };

struct client_hdr {
	uint8_t type;
	uint32_t len;
	uint32_t crc;
};

/*
 * Checks a received header (CLIENT_PROTO_HDR_SIZE bytes): 0, QFS_EMSG (bad
 * magic, version or type) or QFS_EFBIG (length over max_payload; *out is
 * filled so the caller can tell what it was).
 */
int client_proto_hdr_decode(const uint8_t *h, size_t max_payload, struct client_hdr *out);
/* 0 if the payload matches the header's CRC, else QFS_EMSG. */
int client_proto_crc_check(const struct client_hdr *h, const uint8_t *payload);

struct client_cmp {
	uint8_t target; /* enum client_cmp_target */
	uint8_t op;	/* enum client_cmp_op */
	const char *key;
	uint64_t num;	      /* VERSION, CREATE, MOD */
	const uint8_t *value; /* VALUE: compared bytewise */
	size_t value_len;
};

struct client_txn_op {
	uint8_t type;	/* enum client_txn_op_type */
	uint32_t flags; /* DEL: CLIENT_DEL_PREFIX */
	const char *key;
	const uint8_t *value; /* PUT */
	size_t value_len;
};

/* Strings are NUL-terminated; after decoding they point into the payload. */
struct client_req {
	uint8_t type;
	const char *name;	 /* MEMBER_ADD/REMOVE/PROMOTE, LEADER_TRANSFER, AUTH_CHANGE */
	const char *peer_addr;	 /* MEMBER_ADD */
	const char *client_addr; /* MEMBER_ADD, "" = none */
	bool learner;		 /* MEMBER_ADD */
	const char *key;	 /* GET, PUT, DEL, WATCH, PUT_LEASE */
	uint32_t flags;		 /* GET, DEL, WATCH, LEASE_LIST, MEMBER_LIST */
	uint64_t rev;		 /* GET: 0 = current; WATCH: start, 0 = next; COMPACT */
	const char *after;	 /* GET, "" = from the start */
	const uint8_t *value;	 /* PUT, PUT_LEASE */
	size_t value_len;
	uint64_t lease_id; /* RENEW, REVOKE, PUT_LEASE (0: grant); LIST: after */
	int64_t ttl_ms;	   /* GRANT, PUT_LEASE (0: attach to lease_id) */
	uint8_t auth_op, auth_perm; /* AUTH_CHANGE */
	const char *auth_arg;	    /* AUTH_CHANGE, "" = none */
	/* TXN: the compares, then the requests of each branch. Decoded, the
	 * arrays are one allocation (client_proto_req_free). */
	const struct client_cmp *cmps;
	size_t ncmps;
	const struct client_txn_op *then_ops, *else_ops;
	size_t nthen, nelse;
	void *txn_; /* private: what the decoder allocated */
};

/* Appends a whole request frame to b. 0, QFS_EINVAL (bad type, a missing
 * or over-long string, a payload over CLIENT_PROTO_MAX_PAYLOAD, a PUT_LEASE
 * with both or neither of lease_id and ttl_ms, a TXN the decoder would
 * refuse) or QFS_ENOMEM. Values (ttl, ids, keys) are the member's to check:
 * they travel as given. */
int client_proto_req_encode(const struct client_req *r, struct qbuf *b);
/* Decodes a request payload (CRC already checked). Every string and value
 * in *out borrows from payload; a TXN's arrays are allocated: free them
 * with client_proto_req_free once done (after a failed decode there is
 * nothing to free). 0, QFS_EMSG or QFS_ENOMEM. */
int client_proto_req_decode(uint8_t type, const uint8_t *payload, size_t len,
			    struct client_req *out);
/* Frees what decoding r allocated; any decoded request, any number of times. */
void client_proto_req_free(struct client_req *r);

struct client_status {
	const char *name;
	uint64_t member_id, cluster_id;
	const char *role;
	uint64_t term, commit_index, applied_index;
	uint64_t leader_id;
	const char *leader_name;
	uint64_t revision, compacted_revision;
	uint64_t db_size, quota_bytes, keys, snapshot_index;
};

struct client_member {
	uint64_t id;
	const char *name, *peer_addr, *client_addr;
	bool voter, leader;
};

struct client_kv {
	const char *key;
	uint8_t type; /* enum store_type */
	uint32_t mode;
	uint64_t create_rev, mod_rev, version;
	const uint8_t *value;
	size_t value_len;
};

struct client_event {
	uint8_t type;	   /* enum client_event_type */
	uint64_t revision; /* the revision that made the change */
	struct client_kv kv;
};

struct client_lease {
	uint64_t id;
	int64_t ttl_ms;
	int64_t remaining_ms; /* by the answering member's clock; 0 = due to expire */
	uint64_t nkeys;	      /* keys attached */
	const char **keys;    /* the keys sent (decoded: into the payload) */
	size_t nkeys_listed;  /* < nkeys when not asked for or cut */
};

/* One SNAPSHOT frame. */
struct client_snapshot {
	uint64_t index, term;		 /* of the image: its applied index */
	uint64_t revision, keys, leases; /* the store's, at that index */
	uint64_t total;			 /* image bytes in all */
	uint32_t crc;			 /* CRC32 (zlib) of all of them */
	uint64_t offset;		 /* of this chunk */
	const uint8_t *chunk;		 /* decoded: into the payload */
	size_t chunk_len;
};

struct client_resp {
	uint8_t type;		       /* the request type answered */
	int status;		       /* 0 or QFS_E* */
	const char *msg;	       /* status != 0 */
	const char *leader_name;       /* status != 0, "" if unknown */
	const char *leader_client;     /* status != 0, "" if unknown */
	struct client_status st;       /* STATUS */
	struct client_member *members; /* MEMBER_LIST; owned, client_proto_resp_free */
	size_t nmembers;
	struct client_kv *kvs; /* GET; owned, client_proto_resp_free */
	size_t nkvs;
	struct client_event *events; /* WATCH; owned, client_proto_resp_free */
	size_t nevents;
	struct client_lease *leases; /* LEASE_LIST; owned (keys too), client_proto_resp_free */
	size_t nleases;
	bool more;	    /* GET, LEASE_LIST: ask again after the last one */
	bool succeeded;	    /* TXN: the compares held */
	uint64_t revision;  /* GET, LEASE_LIST: read at; PUT/DEL/PUT_LEASE/
			     * LEASE_REVOKE/TXN: produced; WATCH: progress;
			     * COMPACT: compacted */
	uint64_t lease_id;  /* LEASE_GRANT, LEASE_RENEW, PUT_LEASE */
	int64_t ttl_ms;	    /* LEASE_GRANT, LEASE_RENEW */
	struct client_snapshot snap; /* SNAPSHOT */
	const uint8_t *auth;	     /* AUTH_LIST: auth_encode bytes, into the payload */
	size_t auth_len;
	const char **keys_; /* private: the leases' keys */
};

/* Response encoders: each appends one whole frame to b and returns 0,
 * QFS_EINVAL (a string over its bound) or QFS_ENOMEM. */
int client_proto_err_encode(struct qbuf *b, uint8_t type, int status, const char *msg,
			    const char *leader_name, const char *leader_client);
int client_proto_ok_encode(struct qbuf *b, uint8_t type);
int client_proto_rev_encode(struct qbuf *b, uint8_t type, uint64_t revision);
int client_proto_status_encode(struct qbuf *b, const struct client_status *st);
int client_proto_members_encode(struct qbuf *b, const struct client_member *m, size_t n);
/* LEASE_GRANT or LEASE_RENEW. */
int client_proto_lease_encode(struct qbuf *b, uint8_t type, uint64_t id, int64_t ttl_ms);
int client_proto_put_lease_encode(struct qbuf *b, uint64_t revision, uint64_t id);
int client_proto_txn_encode(struct qbuf *b, bool succeeded, uint64_t revision);
/* AUTH_LIST: the users and roles as auth_encode() gave them. */
int client_proto_auth_list_encode(struct qbuf *b, const uint8_t *state, size_t len);
/* One SNAPSHOT frame; QFS_EINVAL for a chunk over CLIENT_PROTO_SNAPSHOT_CHUNK
 * or past the total. */
int client_proto_snapshot_encode(struct qbuf *b, const struct client_snapshot *s);

/* A LEASE_LIST response built lease by lease: begin, then per lease add and
 * add_key for each of its keys listed, then end. l->keys is ignored by add. */
struct client_leases_enc {
	struct qbuf *b;
	size_t frame, payload;
	size_t nkeys_at; /* where the last lease's count of keys listed goes */
	uint32_t n, nkeys;
	int err;
};
void client_proto_leases_begin(struct client_leases_enc *e, struct qbuf *b, uint64_t revision);
/* Payload bytes a lease adds without its keys, and a key adds. */
size_t client_proto_lease_size(void);
size_t client_proto_lease_key_size(const char *key);
void client_proto_leases_add(struct client_leases_enc *e, const struct client_lease *l);
void client_proto_leases_add_key(struct client_leases_enc *e, const char *key);
int client_proto_leases_end(struct client_leases_enc *e, bool more);

/* A GET response built key by key: begin, add..., end. */
struct client_get_enc {
	struct qbuf *b;
	size_t frame;	/* offset of the frame header */
	size_t payload; /* offset of the payload */
	uint32_t n;
	int err;
};
void client_proto_get_begin(struct client_get_enc *g, struct qbuf *b, uint64_t revision);
/* Payload bytes a kv adds: for page budgeting. */
size_t client_proto_kv_size(const struct client_kv *kv);
void client_proto_get_add(struct client_get_enc *g, const struct client_kv *kv);
int client_proto_get_end(struct client_get_enc *g, bool more);

/* A WATCH frame built event by event: begin, add..., end. end() writes the
 * progress, known only once the frame is complete. */
struct client_watch_enc {
	struct qbuf *b;
	size_t frame, payload;
	uint32_t n;
	int err;
};
void client_proto_watch_begin(struct client_watch_enc *w, struct qbuf *b);
/* Payload bytes an event adds: for frame budgeting. */
size_t client_proto_event_size(const struct client_event *ev);
void client_proto_watch_add(struct client_watch_enc *w, const struct client_event *ev);
int client_proto_watch_end(struct client_watch_enc *w, uint64_t progress);

/*
 * Decodes a response frame of header h (CRC already checked). Strings and
 * values point into payload; members/kvs/events/leases are allocated (free with
 * client_proto_resp_free, also safe on a failed decode). 0, QFS_EMSG or
 * QFS_ENOMEM. Array counts are checked against the payload size before
 * allocating. WATCH events must be of a known type, in revision order and
 * none after the frame's progress + 1; a SNAPSHOT chunk must lie within
 * the total, and be empty only when it ends the image.
 */
int client_proto_resp_decode(const struct client_hdr *h, const uint8_t *payload, size_t len,
			     struct client_resp *out);
void client_proto_resp_free(struct client_resp *r);

/* Milliseconds as seconds without trailing zeros ("1.5", "10"; a JSON number
 * too; negative as 0), into buf. Returns buf. */
const char *client_proto_secs_str(int64_t ms, char *buf, size_t len);

#endif
