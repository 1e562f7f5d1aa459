/* The data dir's lock: see datadir.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/errors.h"
#include "datadir.h"

/* flock(2) on DIR/LOCK opened with flags; *fd is -1 unless locked. */
static int lock_file(const char *dir, int flags, int op, int *fd, char *err, size_t errlen)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/LOCK", dir);
	*fd = open(path, flags | O_CLOEXEC, 0600);
	if (*fd < 0) {
		if (errno == ENOENT)
			return QFS_ENOENT;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return QFS_EIO;
	}
	if (flock(*fd, op | LOCK_NB) != 0) {
		int busy = errno == EWOULDBLOCK;

		if (busy)
			snprintf(err, errlen, "data dir %s is in use by another quorumfs", dir);
		else
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		close(*fd);
		*fd = -1;
		return busy ? QFS_EBUSY : QFS_EIO;
	}
	return 0;
}

int datadir_lock(const char *dir, int *fd, char *err, size_t errlen)
{
	int rv;

	*fd = -1;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
		return QFS_EIO;
	}
	rv = lock_file(dir, O_RDWR | O_CREAT, LOCK_EX, fd, err, errlen);
	if (rv == QFS_ENOENT) { /* O_CREAT: the dir went away under us */
		snprintf(err, errlen, "cannot create %s/LOCK: %s", dir, strerror(ENOENT));
		rv = QFS_EIO;
	}
	return rv;
}

static bool has_dir(const char *dir, const char *sub)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int datadir_lock_shared(const char *dir, int *fd, char *err, size_t errlen)
{
	struct stat st;
	int rv;

	*fd = -1;
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return errno == ENOENT ? QFS_ENOENT : QFS_EIO;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory", dir);
		return QFS_ENOENT;
	}
	if (!has_dir(dir, "wal") && !has_dir(dir, "snap")) {
		snprintf(err, errlen, "%s is not a quorumfs data dir (no wal/ or snap/ in it)",
			 dir);
		return QFS_ENOENT;
	}
	rv = lock_file(dir, O_RDONLY, LOCK_SH, fd, err, errlen);
	return rv == QFS_ENOENT ? 0 : rv;
}
