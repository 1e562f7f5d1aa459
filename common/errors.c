/* The error table's message and errno lookups. */
#include <errno.h>
#include <stddef.h>

#include "errors.h"

struct qfs_error_info {
	int code;
	const char *msg;
	int err;
};

static const struct qfs_error_info table[] = {
#define QFS_ERR_INFO(name, msg, errno_) {name, msg, errno_},
	QFS_ERROR_TABLE(QFS_ERR_INFO)
#undef QFS_ERR_INFO
};

static const struct qfs_error_info *find(int code)
{
	if (code <= QFS_ERR_BASE_ || code >= QFS_ERR_END_)
		return NULL;
	return &table[code - QFS_ERR_BASE_ - 1];
}

const char *qfs_strerror(int code)
{
	const struct qfs_error_info *e;

	if (code == 0)
		return "ok";
	e = find(code);
	return e ? e->msg : "unknown error";
}

int qfs_to_errno(int code)
{
	const struct qfs_error_info *e;

	if (code == 0)
		return 0;
	e = find(code);
	return e ? e->err : EIO;
}
