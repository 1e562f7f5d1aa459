/*
 * Snapshot files: DIR/snap/<16 hex index>-<16 hex term>.snap, holding an
 * opaque state image (store_snapshot_save() output) compressed with zlib.
 *
 * File: 8 bytes magic "QFSSNAP1" | u64 index | u64 term | u64 raw length |
 *       u64 compressed length | u32 CRC32 of compressed bytes |
 *       u32 CRC32 of the 40 header bytes before it | compressed bytes
 * Written to a temporary name, fsynced, renamed, directory fsynced: a crash
 * leaves either the old set of snapshots or the new one.
 * All integers little-endian; the header CRC covers bytes 0..39 (the payload
 * CRC field is checked against the payload instead). Raw images over 8 GiB
 * are refused on write (QFS_EINVAL) and treated as corruption on load.
 *
 * The same format serves as a backup file (`quorumfs snapshot save`), under
 * any name and written piece by piece (snapfile_writer_*).
 *
 * Threads: no shared state; but do not run snapfile_load() while a
 * snapfile_write() on the same DIR is in flight (load deletes tmp files).
 */
#ifndef QFS_SNAPFILE_H
#define QFS_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* Writes a snapshot and then deletes all but the newest `keep` snapshots
 * (newest by index, then term; keep < 1 counts as 1). Creates DIR/snap if
 * needed. Returns 0 once the new file and its name are durable (only then
 * may the WAL be compacted), QFS_EIO, QFS_ENOMEM or QFS_EINVAL; the reason is
 * logged. Failing to delete old snapshots is logged, not returned: the new
 * one is durable either way. data is only read during the call.
 * Blocks (compression and fsync): call it off the event loop. */
int snapfile_write(const char *dir, uint64_t index, uint64_t term, const uint8_t *data,
		   size_t len, int keep);

/*
 * Loads the newest snapshot. *data (malloc'd, caller frees) gets the raw
 * image. Returns 0, QFS_ENOENT when there is none (data NULL), or
 * QFS_ECORRUPT with errmsg naming the file and what is wrong (the daemon
 * refuses to start: serving from an older snapshot could lose data).
 * QFS_EIO or QFS_ENOMEM (with errmsg) when reading itself failed. Leftover
 * DIR/snap/tmp-* files from an interrupted write are deleted.
 */
int snapfile_load(const char *dir, uint64_t *index, uint64_t *term, uint8_t **data, size_t *len,
		  char *errmsg, size_t errlen);

/* What a snapshot file's header says. */
struct snapfile_info {
	uint64_t index, term;
	uint64_t raw_len;  /* bytes of the image */
	uint64_t comp_len; /* compressed bytes after the header */
};

/*
 * Reads and verifies one snapshot file at path, whatever its name: header
 * CRC, payload CRC (before anything is decompressed), lengths, and that the
 * image decompresses to exactly raw_len bytes. A file named like a snapshot
 * (<16 hex index>-<16 hex term>.snap) must say the same in its header. With
 * data NULL it only verifies, in bounded memory; otherwise *data (malloc'd,
 * caller frees) gets the image. info (may be NULL) gets the header once it
 * is verified. Returns 0, QFS_ECORRUPT, QFS_EIO or QFS_ENOMEM, with errmsg
 * naming the file and what is wrong. Reads only.
 */
int snapfile_read(const char *path, struct snapfile_info *info, uint8_t **data, size_t *len,
		  char *errmsg, size_t errlen);

#define SNAPFILE_NAME_LEN 38 /* <16 hex>-<16 hex>.snap */

struct snapfile_name {
	uint64_t index, term;
	char name[SNAPFILE_NAME_LEN + 1]; /* in DIR/snap */
};

/* The snapshot files in DIR/snap, newest first, read from their names only
 * (nothing is opened or deleted). *out is malloc'd (caller frees; NULL when
 * there are none). Returns 0, QFS_ENOENT (no DIR/snap), QFS_EIO or
 * QFS_ENOMEM, with errmsg. */
int snapfile_list(const char *dir, struct snapfile_name **out, size_t *n, char *errmsg,
		  size_t errlen);

/*
 * A snapshot file written piece by piece, for images that are never whole
 * in memory (a backup streamed from a member). It goes to a temporary file
 * next to path (tmp-<name>.XXXXXX), is compressed as it comes, and only
 * commit puts it in place: header, fsync, rename over path, directory fsync.
 * Each call returns 0 or QFS_EIO, QFS_ENOMEM, QFS_EINVAL (the image grew
 * over the 8 GiB limit), with errmsg naming the file. After an error only
 * snapfile_writer_destroy() is useful.
 */
struct snapfile_writer;
int snapfile_writer_create(const char *path, uint64_t index, uint64_t term,
			   struct snapfile_writer **out, char *errmsg, size_t errlen);
/* data is only read during the call. Blocks (compression, write(2)). */
int snapfile_writer_append(struct snapfile_writer *w, const uint8_t *data, size_t len, char *errmsg,
			   size_t errlen);
/* Makes the file durable under path; info (may be NULL) gets its header. */
int snapfile_writer_commit(struct snapfile_writer *w, struct snapfile_info *info, char *errmsg,
			   size_t errlen);
/* Frees w; a temporary file not committed is removed. NULL is fine. */
void snapfile_writer_destroy(struct snapfile_writer *w);

#endif
