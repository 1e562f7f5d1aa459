/*
 * Both ends of the replayer (see replay.h). Step frame on the pipe:
 *   u8 kind | u32 flags | u32 mode | u64 size | u16 len | path | u16 len | path2
 * answer: i32 (0 or -errno).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/codec.h"
#include "../common/errors.h"
#include "../common/log.h"
#include "../store/fileio.h"
#include "replay.h"

#define PATH_BYTES_MAX 8192

struct replayer {
	pid_t pid;
	int to, from; /* pipes to and from the helper */
	int broken;
};

int replayer_start(struct replayer **out)
{
	struct replayer *rp = calloc(1, sizeof(*rp));
	int down[2] = {-1, -1}, up[2] = {-1, -1};
	pid_t parent = getpid();

	if (!rp || pipe2(down, O_CLOEXEC) || pipe2(up, O_CLOEXEC))
		goto err;
	rp->pid = fork();
	if (rp->pid < 0)
		goto err;
	if (rp->pid == 0) { /* only async-signal-safe calls until exec */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if (dup2(down[0], 0) < 0 || dup2(up[1], 1) < 0)
			_exit(1);
		execl("/proc/self/exe", "quorumfs", "replay-helper", (char *)NULL);
		_exit(127);
	}
	close(down[0]);
	close(up[1]);
	rp->to = down[1];
	rp->from = up[0];
	*out = rp;
	return 0;
err:
	for (int i = 0; i < 2; i++) {
		if (down[i] >= 0)
			close(down[i]);
		if (up[i] >= 0)
			close(up[i]);
	}
	free(rp);
	return QFS_EIO;
}

pid_t replayer_pid(const struct replayer *rp)
{
	return rp->pid;
}

static void put_path(struct qbuf *b, const char *p)
{
	size_t n = p ? strlen(p) : 0;

	qbuf_put_u8(b, (uint8_t)n);
	qbuf_put_u8(b, (uint8_t)(n >> 8));
	qbuf_put(b, p, n);
}

int replayer_run(struct replayer *rp, const struct replay_step *s)
{
	struct pollfd pfd = {.fd = rp->from, .events = POLLIN};
	uint8_t ans[4];
	size_t got = 0;
	struct qbuf b;
	int rv = 0;

	if (rp->broken)
		return QFS_EIO;
	qbuf_init(&b);
	qbuf_put_u8(&b, (uint8_t)s->kind);
	qbuf_put_u32(&b, s->flags);
	qbuf_put_u32(&b, s->mode);
	qbuf_put_u64(&b, s->size);
	put_path(&b, s->path);
	put_path(&b, s->path2);
	if (qbuf_error(&b) || fileio_write_all(rp->to, b.data, b.len) != 0)
		rv = QFS_EIO;
	qbuf_close(&b);
	while (rv == 0 && got < sizeof(ans)) {
		int n = poll(&pfd, 1, REPLAY_TIMEOUT_MS);
		ssize_t k;

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			rv = QFS_ETIMEDOUT;
			break;
		}
		k = read(rp->from, ans + got, sizeof(ans) - got);
		if (k <= 0) {
			rv = QFS_EIO;
			break;
		}
		got += (size_t)k;
	}
	if (rv) {
		LOG_WARN("the inotify replay helper %s; remote changes will no longer show in "
			 "inotify here",
			 rv == QFS_ETIMEDOUT ? "hangs" : "is gone");
		rp->broken = 1;
		kill(rp->pid, SIGKILL);
		return rv;
	}
	return (int)qfs_le32_get(ans);
}

void replayer_stop(struct replayer *rp)
{
	if (!rp)
		return;
	close(rp->to); /* EOF: the helper exits */
	close(rp->from);
	if (rp->broken)
		kill(rp->pid, SIGKILL);
	waitpid(rp->pid, NULL, 0);
	free(rp);
}

/* ---- The helper process ---------------------------------------------------- */

static int read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = read(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_path(char *out)
{
	uint8_t len[2];
	size_t n;

	if (read_all(0, len, 2))
		return -1;
	n = len[0] | (size_t)len[1] << 8;
	if (n >= PATH_BYTES_MAX || (n && read_all(0, (uint8_t *)out, n)))
		return -1;
	out[n] = 0;
	return 0;
}

static int perform(const struct replay_step *s)
{
	int fd, rv = 0;

	switch (s->kind) {
	case REPLAY_CREATE_FILE:
	case REPLAY_MODIFY:
		fd = open(s->path,
			  O_WRONLY | O_CLOEXEC | (s->kind == REPLAY_CREATE_FILE ? O_CREAT | O_EXCL : 0),
			  s->mode & 07777);
		if (fd < 0)
			return -errno;
		/* IN_MODIFY, except for a new empty file: created by open, like
		 * a local `: > f`, it was never modified. */
		if ((s->kind == REPLAY_MODIFY || s->size) && ftruncate(fd, (off_t)s->size) != 0)
			rv = -errno;
		close(fd); /* IN_CLOSE_WRITE */
		return rv;
	case REPLAY_MKDIR:
		return mkdir(s->path, s->mode & 07777) ? -errno : 0;
	case REPLAY_SYMLINK:
		return symlink(s->path2, s->path) ? -errno : 0;
	case REPLAY_ATTRIB:
		return chmod(s->path, s->mode & 07777) ? -errno : 0;
	case REPLAY_UNLINK:
		return unlink(s->path) ? -errno : 0;
	case REPLAY_RMDIR:
		return rmdir(s->path) ? -errno : 0;
	case REPLAY_RENAME:
		return syscall(SYS_renameat2, AT_FDCWD, s->path, AT_FDCWD, s->path2, s->flags)
			   ? -errno
			   : 0;
	}
	return -EINVAL;
}

int replay_helper_main(void)
{
	static char path[PATH_BYTES_MAX], path2[PATH_BYTES_MAX];
	uint8_t head[17];

	signal(SIGPIPE, SIG_IGN);
	while (read_all(0, head, sizeof(head)) == 0) {
		struct replay_step s = {.kind = head[0],
					.flags = qfs_le32_get(head + 1),
					.mode = qfs_le32_get(head + 5),
					.size = qfs_le64_get(head + 9),
					.path = path,
					.path2 = path2};
		uint8_t ans[4];

		if (read_path(path) || read_path(path2))
			return 1;
		qfs_le32_put(ans, (uint32_t)perform(&s));
		if (write(1, ans, sizeof(ans)) != sizeof(ans))
			return 1;
	}
	return 0; /* the daemon closed the pipe */
}
