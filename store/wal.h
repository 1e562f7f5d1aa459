/*
 * Write-ahead log: the durable record of log entries (index, term, bytes) and
 * of the Raft hard state (term, vote, commit), in segment files
 * DIR/wal/<16 hex first index>.wal.
 *
 * Record: u32 length of payload | u32 CRC32 of those 4 length bytes |
 *         u32 CRC32 of payload | payload (u8 type, then per type:
 *         ENTRY: u64 index, u64 term, data; HARDSTATE: u64 term, vote, commit)
 * The header CRC lets recovery tell a damaged length from a torn write.
 *
 * An entry with index i replaces every entry >= i written before it (a Raft
 * follower overwriting a conflicting suffix just appends).
 *
 * Recovery (wal_open): every segment is read front to back. A damaged or
 * short record at the very end of the last segment, with nothing but zero
 * bytes after it, is a torn write: the file is truncated there and a warning
 * logged. Any other bad record refuses to open with a message naming the
 * file and byte offset. A WAL is never silently skipped over.
 *
 * Details the daemon relies on:
 * - Segment names increase in creation order (= replay order). A segment is
 *   named after its first entry's index, or last_index+1 when created before
 *   any entry, bumped to previous name+1 when the first entry replaced an
 *   older suffix: the name orders files, it is not an index lookup.
 * - Each segment after the first starts with a copy of the latest HARDSTATE,
 *   so replay may repeat a hard state; the last one replayed is current.
 * - Continuity is checked on open: the first entry replayed must be
 *   <= after_index+1 and each next one <= previous+1 (entries <= after_index
 *   leave the log ending at after_index). After installing a snapshot at S,
 *   write entries from S+1 on and reopen with after_index >= S.
 *
 * Threads: a struct wal is used by one thread at a time (the syncer thread);
 * wal_write blocks on write(2) + fdatasync(2). No call is safe concurrently
 * with another on the same struct wal, wal_last_index() included.
 */
#ifndef QFS_WAL_H
#define QFS_WAL_H

#include <stddef.h>
#include <stdint.h>

#define WAL_RECORD_MAX (64u << 20)     /* payload bytes; larger is corruption */
#define WAL_SEGMENT_BYTES (64u << 20)  /* rotate after this many bytes */

/*
 * SNAPSHOT (u64 index, u64 term) marks that a snapshot at index was made
 * durable and the log restarts after it: every entry written before it is
 * superseded (a follower that installs a leader's snapshot drops its own,
 * possibly conflicting, log this way) and the next entry is index + 1.
 * Replay hands it to the callback like any record.
 */
enum wal_record_type { WAL_ENTRY = 1, WAL_HARDSTATE = 2, WAL_SNAPSHOT = 3 };

struct wal_record {
	enum wal_record_type type;
	uint64_t index, term;        /* ENTRY, SNAPSHOT */
	const uint8_t *data;         /* ENTRY; borrowed */
	size_t len;
	uint64_t hs_term, hs_vote, hs_commit; /* HARDSTATE */
};

struct wal;

/*
 * Opens (creating DIR/wal if needed), verifies and repairs a torn tail.
 * Then replays: cb is called for each record in file order, with entries at
 * index <= after_index skipped; data pointers are valid during the call only.
 * cb returning non-zero stops and wal_open returns that value.
 * On error, errmsg (may be NULL) gets one line naming file and offset, and
 * the return is QFS_ECORRUPT or QFS_EIO (QFS_ENOMEM if memory ran out).
 * Every record is verified (and a torn tail truncated) before cb sees the
 * first one, so cb is never called when the WAL is refused as corrupt.
 * With no segment yet, DIR/wal/<after_index+1>.wal is created.
 */
int wal_open(const char *dir, uint64_t after_index,
	     int (*cb)(void *arg, const struct wal_record *rec), void *arg, struct wal **out,
	     char *errmsg, size_t errlen);
void wal_close(struct wal *w);

/* Appends records, then fdatasync. Returns 0 only when all are durable;
 * QFS_EIO otherwise (the WAL must then be considered failed: every later
 * wal_write returns QFS_EIO). QFS_EINVAL, with nothing written, for a bad
 * record (unknown type, entry index 0, data too long for WAL_RECORD_MAX).
 * Rotates to a new segment when the current one is over WAL_SEGMENT_BYTES.
 * recs and their data are only read during the call. */
int wal_write(struct wal *w, const struct wal_record *recs, size_t n);

/* Deletes whole segments whose entries are all <= index (after a snapshot at
 * index made them unnecessary). The last segment is never deleted, and only
 * the oldest segments go: it stops at the first one holding an entry > index.
 * Returns 0 or QFS_EIO (some files may be gone: the WAL stays usable). */
int wal_compact(struct wal *w, uint64_t index);

/* The index of the last entry written, or after wal_open the last entry in
 * the files (skipped ones included); 0 if there is none. May be
 * below the snapshot index: the log's end is the larger of the two. */
uint64_t wal_last_index(const struct wal *w);

/* ---- Reading without opening: tools (quorumfs check, dump-wal) -------------- */

/* Where a record sits. */
struct wal_pos {
	const char *path; /* the segment file */
	uint64_t offset;  /* of the record's header */
	uint64_t bytes;	  /* header and payload */
	int covered;	  /* an entry at or below the snapshot index (the data dir's,
			   * or an earlier SNAPSHOT record's): replay skips it */
};

/* One segment, once read. */
struct wal_segment_info {
	const char *path;
	uint64_t size;	  /* bytes in the file */
	uint64_t records; /* whole records read */
	uint64_t torn_at; /* UINT64_MAX, or where a torn tail begins (last segment) */
	const char *torn_why;
};

struct wal_inspect_cb {
	/* Each record in file order, covered ones included; data as in
	 * wal_open. Non-zero stops the walk and is returned. May be NULL. */
	int (*record)(void *arg, const struct wal_record *rec, const struct wal_pos *pos);
	/* Each segment after its records. Non-zero stops. May be NULL. */
	int (*segment)(void *arg, const struct wal_segment_info *seg);
	void *arg;
};

struct wal_summary {
	uint64_t segments, records, entries;
	uint64_t first_index, last_index; /* of the entries in the files; 0: none */
	uint64_t last_term;		  /* of the last ENTRY or SNAPSHOT record: the log's end */
	int have_hs;
	uint64_t hs_term, hs_vote, hs_commit; /* the last HARDSTATE */
	/* A torn tail of the last segment: what wal_open would truncate. */
	int torn;
	uint64_t torn_offset, torn_bytes;
	const char *torn_why; /* static */
	char torn_file[32];   /* the segment's name in DIR/wal */
};

/*
 * Reads DIR/wal like wal_open() does, with the same checks (CRCs, record
 * structure, index continuity after after_index), but only reads: no file
 * or directory is created, truncated or locked, and a torn tail is
 * reported in sum (not an error). Records reach cb as they are read, so on
 * damage cb has seen everything before it. Returns 0, QFS_ENOENT (no
 * DIR/wal), QFS_ECORRUPT or QFS_EIO with errmsg naming file and offset,
 * QFS_ENOMEM, or what cb returned. sum (may be NULL) is filled as far as
 * the walk got.
 */
int wal_inspect(const char *dir, uint64_t after_index, const struct wal_inspect_cb *cb,
		struct wal_summary *sum, char *errmsg, size_t errlen);

/* For tests: rotate once a segment is over `bytes` instead of
 * WAL_SEGMENT_BYTES, so rotation is cheap to exercise. */
void wal_set_segment_bytes(struct wal *w, uint64_t bytes);

#endif
