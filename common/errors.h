/*
 * Project error codes: one X-macro table gives the code, its message and the
 * errno it becomes at the FUSE boundary. Functions return 0 or a negative
 * QFS_E* code; errno values appear only in fs/.
 */
#ifndef QFS_ERRORS_H
#define QFS_ERRORS_H

/*      name              message                                   errno */
#define QFS_ERROR_TABLE(X)                                                     \
	X(QFS_ENOMEM, "out of memory", ENOMEM)                                 \
	X(QFS_ENOENT, "no such key", ENOENT)                                   \
	X(QFS_EEXIST, "key already exists", EEXIST)                            \
	X(QFS_ENOTDIR, "a parent is not a directory", ENOTDIR)                 \
	X(QFS_EISDIR, "key is a directory", EISDIR)                            \
	X(QFS_ENOTEMPTY, "directory not empty", ENOTEMPTY)                     \
	X(QFS_EFBIG, "value larger than --max-value-bytes", EFBIG)             \
	X(QFS_ENOSPC, "store over --quota-bytes", ENOSPC)                      \
	X(QFS_ENAMETOOLONG, "name too long", ENAMETOOLONG)                     \
	X(QFS_EINVAL, "invalid argument", EINVAL)                              \
	X(QFS_EPERM, "operation not permitted", EPERM)                         \
	X(QFS_EACCES, "permission denied", EACCES)                             \
	X(QFS_ENODATA, "no such attribute", ENODATA)                           \
	X(QFS_ERANGE, "buffer too small", ERANGE)                              \
	X(QFS_ECOMPACTED, "revision has been compacted", ENOENT)               \
	X(QFS_EFUTUREREV, "revision not yet reached", ENOENT)                  \
	X(QFS_ECORRUPT, "data is corrupt", EIO)                                \
	X(QFS_EIO, "input/output error", EIO)                                  \
	X(QFS_ETIMEDOUT, "request timed out", ETIMEDOUT)                       \
	X(QFS_ESHUTDOWN, "member is shutting down", ESHUTDOWN)                 \
	X(QFS_ENOTLEADER, "not the leader", EAGAIN)                            \
	X(QFS_EMSG, "malformed message", EPROTO)                               \
	X(QFS_ECOMPARE, "transaction compare failed", EEXIST)                  \
	X(QFS_EBUSY, "a membership change is in progress", EBUSY)              \
	X(QFS_EAGAIN, "queue full, try again later", EAGAIN)                   \
	X(QFS_EUNKNOWN, "outcome unknown: applied before its answer was due", EIO) \
	X(QFS_EDENIED, "not permitted to this user (auth is enabled)", EACCES)

enum {
	QFS_OK = 0,
	QFS_ERR_BASE_ = -1000,
#define QFS_ERR_ENUM(name, msg, errno_) name,
	QFS_ERROR_TABLE(QFS_ERR_ENUM)
#undef QFS_ERR_ENUM
	QFS_ERR_END_
};

/* Static message for a QFS_E* code (or "ok"/"unknown error"). */
const char *qfs_strerror(int code);

/* The positive errno a QFS_E* code maps to (EIO for unknown codes, 0 for 0). */
int qfs_to_errno(int code);

#endif
