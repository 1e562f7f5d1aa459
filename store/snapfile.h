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

#endif
