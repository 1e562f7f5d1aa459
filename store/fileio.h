/*
 * Small file helpers shared by the WAL and the snapshot files: whole writes,
 * directory fsync, path joining and error messages for the caller.
 */
#ifndef QFS_FILEIO_H
#define QFS_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Writes all n bytes (retrying short writes and EINTR). 0, or -1 with errno. */
int fileio_write_all(int fd, const uint8_t *p, size_t n);

/* fsync(2) of a directory, so entries created or removed in it are durable.
 * 0, or -1 with errno. */
int fileio_fsync_dir(const char *path);

/* Parses exactly 16 lowercase hex digits (file names carry indexes so).
 * 1 on success, 0 otherwise. */
int fileio_parse_hex16(const char *s, uint64_t *out);

/* "a/b" in a new allocation (caller frees), or NULL. */
char *fileio_path_join(const char *a, const char *b);

/* Formats into errmsg when the caller gave one (errmsg may be NULL). */
__attribute__((format(printf, 3, 4))) void fileio_set_err(char *errmsg, size_t errlen,
							  const char *fmt, ...);

#endif
