/*
 * Snapshot files: DIR/snap/<16 hex index>-<16 hex term>.snap, holding an
 * opaque state image (store_snapshot_save() output) compressed with zlib.
 *
 * File: 8 bytes magic "QFSSNAP1" | u64 index | u64 term | u64 raw length |
 *       u64 compressed length | u32 CRC32 of compressed bytes |
 *       u32 CRC32 of the 40 header bytes before it | compressed bytes
 * Written to a temporary name, fsynced, renamed, directory fsynced: a crash
 * leaves either the old set of snapshots or the new one.
 */
#ifndef QFS_SNAPFILE_H
#define QFS_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* Writes a snapshot and then deletes all but the newest `keep` snapshots.
 * Blocks (compression and fsync): call it off the event loop. */
int snapfile_write(const char *dir, uint64_t index, uint64_t term, const uint8_t *data,
		   size_t len, int keep);

/*
 * Loads the newest snapshot. *data (malloc'd, caller frees) gets the raw
 * image. Returns 0, QFS_ENOENT when there is none (data NULL), or
 * QFS_ECORRUPT with errmsg naming the file and what is wrong (the daemon
 * refuses to start: serving from an older snapshot could lose data).
 */
int snapfile_load(const char *dir, uint64_t *index, uint64_t *term, uint8_t **data, size_t *len,
		  char *errmsg, size_t errlen);

#endif
