/*
 * The replayer: a helper process that performs the VFS operations replaying
 * remote changes through our own mount (remote.c explains why).
 *
 * Why a process, not a thread: a daemon that dies (kill -9) while one of its
 * own threads waits on a request to its own mount can never exit (its files
 * are flushed before /dev/fuse is closed, and nobody answers). The helper
 * holds no /dev/fuse descriptor (it is exec'd), so the daemon's death aborts
 * the connection, which unblocks the helper, and the kernel kills it
 * (PR_SET_PDEATHSIG).
 *
 * The daemon side sends one step at a time over a pipe and waits for its
 * answer, at most REPLAY_TIMEOUT_MS; a helper that does not answer is
 * killed and replaying stops (with a log line), nothing else is affected.
 */
#ifndef QFS_REPLAY_H
#define QFS_REPLAY_H

#include <stdint.h>
#include <sys/types.h>

#define REPLAY_TIMEOUT_MS 5000

enum replay_kind {
	REPLAY_CREATE_FILE = 1, /* open(O_CREAT|O_EXCL) + ftruncate(size) + close */
	REPLAY_MODIFY,          /* open + ftruncate(size) + close */
	REPLAY_MKDIR,
	REPLAY_SYMLINK,         /* path2: the target */
	REPLAY_ATTRIB,          /* chmod(mode) */
	REPLAY_UNLINK,
	REPLAY_RMDIR,
	REPLAY_RENAME,          /* path -> path2, renameat2 flags */
};

struct replay_step {
	enum replay_kind kind;
	const char *path, *path2; /* absolute, under the mount */
	uint32_t flags, mode;
	uint64_t size;
};

struct replayer;

/* Starts the helper (call from the main thread: the helper dies with it). */
int replayer_start(struct replayer **out);
/* The helper's pid: its requests carry it (fuse_req_ctx()->pid). */
pid_t replayer_pid(const struct replayer *rp);
/* Performs one step in the helper and waits for it. 0, the step's errno as
 * a negative number, or QFS_ETIMEDOUT / QFS_EIO (the helper is gone). One
 * thread at a time. */
int replayer_run(struct replayer *rp, const struct replay_step *s);
void replayer_stop(struct replayer *rp);

/* `quorumfs replay-helper`: the helper's main, reading steps on stdin. */
int replay_helper_main(void);

#endif
