/*
 * A member's data dir: DIR/LOCK, DIR/wal/ (store/wal.h) and DIR/snap/
 * (store/snapfile.h). A running member holds an exclusive flock(2) on LOCK
 * for its whole life (server_recover.c), as does `snapshot restore` while
 * it creates one; the offline readers (`check`, `dump-wal`) take a shared
 * lock, so no member starts under them and they learn when one runs.
 * The lock is released when its descriptor is closed (or the process ends).
 */
#ifndef QFS_DATADIR_H
#define QFS_DATADIR_H

#include <stddef.h>

/*
 * Creates DIR (0700) when missing and DIR/LOCK, and locks it exclusively;
 * *fd holds the lock. Returns 0, QFS_EBUSY (another process holds it) or
 * QFS_EIO, with one line in err.
 */
int datadir_lock(const char *dir, int *fd, char *err, size_t errlen);

/*
 * For offline readers. DIR must look like a data dir (wal/ or snap/ in it):
 * QFS_ENOENT otherwise, err saying why. Takes a shared lock on LOCK (*fd,
 * or -1 when there is no LOCK file: no member ever ran there, nothing to
 * lock). QFS_EBUSY when a member holds it (*fd -1), QFS_EIO. Creates and
 * changes nothing.
 */
int datadir_lock_shared(const char *dir, int *fd, char *err, size_t errlen);

#endif
