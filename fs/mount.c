/*
 * Mounting: the FUSE session, its multithreaded loop on a thread of its own,
 * and the two ways a mount ends. A stop of the member (SIGTERM) unmounts
 * from the loop thread once in-flight commits are done; an unmount from
 * outside (umount, fusermount3 -u) ends the FUSE loop, which asks the member
 * to stop. A dead mount left by a killed daemon is detached before mounting.
 */
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"
#include "replay.h"

static void *fuse_main_thread(void *arg)
{
	struct fs *fs = arg;
	struct fuse_loop_config *lc = fuse_loop_cfg_create();

	if (lc) {
		fuse_loop_cfg_set_max_threads(lc, 64);
		fuse_loop_cfg_set_idle_threads(lc, 8);
	}
	fuse_session_loop_mt(fs->se, lc);
	fuse_loop_cfg_destroy(lc);
	server_shutdown(fs->srv); /* no-op when the stop began with the member */
	__atomic_store_n(&fs->thread_done, true, __ATOMIC_RELEASE); /* main may now free srv */
	return NULL;
}

/*
 * Detaches the mount without closing /dev/fuse under the FUSE threads (they
 * may be reading it): once the kernel drops the superblock the connection
 * ends, their reads fail and the loop returns; fs_close() then lets libfuse
 * close the device.
 */
static void detach(const char *mnt)
{
	pid_t pid;

	if (geteuid() == 0) {
		if (umount2(mnt, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
			LOG_WARN("umount %s: %s", mnt, strerror(errno));
		return;
	}
	pid = fork(); /* an unprivileged mount goes through the setuid helper */
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", mnt, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

static void stop_hook(void *arg)
{
	struct fs *fs = arg;

	LOG_INFO("unmounting %s", fs->cfg->mount);
	server_set_applied_hook(fs->srv, NULL, NULL);
	inval_stop(fs->inval); /* answers the flushes still queued there */
	__atomic_store_n(&fs->replay_pid, 0, __ATOMIC_RELEASE);
	replayer_stop(fs->replayer);
	fs->replayer = NULL;
	fuse_session_exit(fs->se);
	detach(fs->mount_abs);
}

static void detach_stale_mount(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) == 0 || errno != ENOTCONN)
		return;
	LOG_WARN("%s is a dead mount (a previous daemon was killed); detaching it", dir);
	if (umount2(dir, MNT_DETACH) != 0)
		LOG_WARN("umount %s: %s", dir, strerror(errno));
}

int fs_mount(struct fs *fs, struct server *srv, const struct config *cfg)
{
	char opts[4096];
	char *argv[] = {"quorumfs", "-o", opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	int rv;

	memset(fs, 0, sizeof(*fs));
	pthread_mutex_init(&fs->replay_mu, NULL);
	fs->srv = srv;
	fs->cfg = cfg;
	if ((rv = nodes_create(&fs->nodes)))
		return rv;
	snprintf(opts, sizeof(opts), "fsname=quorumfs,subtype=quorumfs,default_permissions%s%s",
		 cfg->kernel_opts ? "," : "", cfg->kernel_opts ? cfg->kernel_opts : "");
	detach_stale_mount(cfg->mount);
	if (!realpath(cfg->mount, fs->mount_abs)) {
		fprintf(stderr, "quorumfs: mount point %s: %s\n", cfg->mount, strerror(errno));
		rv = QFS_EINVAL;
		goto err_nodes;
	}
	fs->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	fuse_opt_free_args(&args); /* libfuse may have copied them */
	if (!fs->se) {
		fprintf(stderr, "quorumfs: bad mount options '%s'\n", opts);
		rv = QFS_EINVAL;
		goto err_nodes;
	}
	if (fuse_session_mount(fs->se, cfg->mount) != 0) {
		fprintf(stderr, "quorumfs: cannot mount at %s (does it exist? is /dev/fuse there?)\n",
			cfg->mount);
		rv = QFS_EIO;
		goto err_session;
	}
	if ((rv = inval_create(fs->se, &fs->inval)))
		goto err_mount;
	if (replayer_start(&fs->replayer) != 0) /* inotify then misses remote changes */
		LOG_WARN("cannot start the inotify replay helper: %s", strerror(errno));
	else
		fs->replay_pid = replayer_pid(fs->replayer);
	server_set_stop_hook(srv, stop_hook, fs);
	server_set_applied_hook(srv, fs_remote_applied, fs);
	if (pthread_create(&fs->thread, NULL, fuse_main_thread, fs) != 0) {
		rv = QFS_ENOMEM;
		goto err_inval;
	}
	fs->thread_started = true;
	return 0;

err_inval:
	fs->replay_pid = 0;
	replayer_stop(fs->replayer);
	fs->replayer = NULL;
	server_set_stop_hook(srv, NULL, NULL);
	server_set_applied_hook(srv, NULL, NULL);
	inval_destroy(fs->inval);
	fs->inval = NULL;
err_mount:
	fuse_session_unmount(fs->se);
err_session:
	fuse_session_destroy(fs->se);
	fs->se = NULL;
err_nodes:
	nodes_destroy(fs->nodes);
	fs->nodes = NULL;
	return rv;
}

bool fs_wait(struct fs *fs)
{
	struct timespec nap = {0, 10 * 1000 * 1000};

	if (!fs->thread_started)
		return true;
	for (int i = 0; i < 500 && !__atomic_load_n(&fs->thread_done, __ATOMIC_ACQUIRE); i++)
		nanosleep(&nap, NULL);
	if (!__atomic_load_n(&fs->thread_done, __ATOMIC_ACQUIRE)) {
		LOG_WARN("FUSE threads still busy after unmount; exiting without waiting");
		return false;
	}
	pthread_join(fs->thread, NULL);
	fs->thread_started = false;
	return true;
}

void fs_close(struct fs *fs)
{
	if (fs->inval)
		inval_destroy(fs->inval);
	if (fs->se) {
		fuse_session_unmount(fs->se); /* the FUSE threads are gone: closes the device */
		fuse_session_destroy(fs->se);
	}
	if (fs->nodes)
		nodes_destroy(fs->nodes);
	memset(fs, 0, sizeof(*fs));
}
