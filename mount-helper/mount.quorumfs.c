/*
 * mount.quorumfs: the helper mount(8) runs for `mount -t quorumfs` and for
 * /etc/fstab lines of type quorumfs. It turns the mount options into a
 * `quorumfs serve` command line, starts the daemon in the background and
 * returns once the mount is ready, or fails with the daemon's own last word.
 *
 *   mount.quorumfs SOURCE DIR [-sfnvrw] [-o data_dir=D,name=N,...]
 *
 * data_dir=D and name=N become --data-dir and --name; `word=value` whose word
 * (with '_' read as '-') is a serve flag becomes that flag; fstab-only words
 * are dropped; everything else goes to the daemon's -o. The daemon's stdout
 * and stderr are appended to D/quorumfs.log. `umount DIR` stops the daemon:
 * it exits when its mount goes away.
 *
 * The daemon is forked once and put in its own session (setsid) rather than
 * double-forked: it stays our child while we wait, so waitpid tells us at
 * once if it dies before the mount is ready. When we exit it is reparented.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* mount(8) helper exit codes. */
#define EXIT_USAGE 1
#define EXIT_MOUNT_FAILURE 32

#define READY_TIMEOUT_MS 30000
#define POLL_MS 50
#define MAX_ARGS 64
#define OPTS_MAX 4096

static const char *const serve_flags[] = {
    "quota-bytes",
    "max-value-bytes",
    "auto-compact-revisions",
    "snapshot-entries",
    "log-level",
    "log-format",
    "config",
    "listen-peer",
    "listen-client",
    "initial-cluster",
    "join",
    "heartbeat-ms",
    "election-ms",
    "request-timeout-ms",
    "peer-cert",
    "peer-key",
    "peer-ca",
    "client-cert",
    "client-key",
    "client-ca",
};

/* serve flags without a value: the bare word (with '_') becomes the flag. */
static const char *const serve_switches[] = {
    "insecure_plaintext",
};

/* Meaningful to mount(8) and fstab only; the daemon never sees them. */
static const char *const fstab_only[] = {
    "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner", "group",
};

struct cmd {
	const char *argv[MAX_ARGS];
	int argc;
	char fuse_opts[OPTS_MAX];
	const char *data_dir, *name;
	int verbose, fake;
};

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("mount.quorumfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage(FILE *out)
{
	fputs("usage: mount.quorumfs SOURCE DIR [-sfnvrw] -o data_dir=DIR[,name=N][,OPTION...]\n"
	      "\n"
	      "Starts `quorumfs serve` in the background mounted on DIR and returns when the\n"
	      "mount is ready (exit 0), or exits 32 with the daemon's last log line.\n"
	      "Normally run by `mount -t quorumfs quorumfs DIR -o ...` or an /etc/fstab line.\n"
	      "\n"
	      "options:\n"
	      "  data_dir=DIR      required: the member's data directory (log: DIR/quorumfs.log)\n"
	      "  name=N            member name\n"
	      "  quota_bytes=B, max_value_bytes=B, auto_compact_revisions=N, snapshot_entries=N,\n"
	      "  log_level=L, log_format=F, config=FILE, listen_peer=A, listen_client=A,\n"
	      "  initial_cluster=n1=A,n2=A,..., join=A, heartbeat_ms=N, election_ms=N,\n"
	      "  request_timeout_ms=N, peer_cert=F, peer_key=F, peer_ca=F, client_cert=F,\n"
	      "  client_key=F, client_ca=F, insecure_plaintext\n"
	      "                    passed as the `quorumfs serve` flag of the same name\n"
	      "  defaults, auto, noauto, nofail, _netdev, user, users, x-*, comment=...\n"
	      "                    fstab-only, ignored\n"
	      "  anything else     (ro, rw, allow_other, consistency=..., ...) passed to serve -o\n"
	      "\n"
	      "flags: -f fake (do nothing), -v verbose, -r read-only, -w read-write,\n"
	      "       -s, -n accepted and ignored\n",
	      out);
}

static void push(struct cmd *c, const char *arg)
{
	if (c->argc >= MAX_ARGS - 1)
		die(EXIT_USAGE, "too many options");
	c->argv[c->argc++] = arg;
	c->argv[c->argc] = NULL;
}

static void fuse_opt_add(struct cmd *c, const char *opt)
{
	size_t used = strlen(c->fuse_opts);

	if (used + strlen(opt) + 2 > sizeof(c->fuse_opts))
		die(EXIT_USAGE, "mount options too long");
	if (used)
		c->fuse_opts[used++] = ',';
	strcpy(c->fuse_opts + used, opt);
}

static int in_list(const char *word, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(word, list[i]) == 0)
			return 1;
	}
	return 0;
}

static char *xconcat(const char *a, const char *sep, const char *b)
{
	size_t len = strlen(a) + strlen(sep) + strlen(b) + 1;
	char *s = malloc(len);

	if (!s)
		die(EXIT_MOUNT_FAILURE, "out of memory");
	snprintf(s, len, "%s%s%s", a, sep, b);
	return s;
}

/*
 * Maps one comma-separated -o string onto c. The string is modified and must
 * outlive c. initial_cluster's value itself holds commas (n1=A,n2=B): an item
 * `name=host:port` right after it, whose name is no option, continues it.
 */
static void parse_opts(struct cmd *c, char *opts)
{
	char *save = NULL, *cluster = NULL;

	for (char *item = strtok_r(opts, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		char *word;
		int is_flag;

		if (!*item || strncmp(item, "x-", 2) == 0 || strncmp(item, "comment=", 8) == 0 ||
		    in_list(item, fstab_only, sizeof(fstab_only) / sizeof(fstab_only[0]))) {
			cluster = NULL;
			continue;
		}
		if (!eq && in_list(item, serve_switches,
				   sizeof(serve_switches) / sizeof(serve_switches[0]))) {
			word = xconcat("--", "", item);
			for (char *p = word; *p; p++)
				if (*p == '_')
					*p = '-';
			push(c, word);
			cluster = NULL;
			continue;
		}
		if (!eq) {
			fuse_opt_add(c, item);
			cluster = NULL;
			continue;
		}
		word = strndup(item, (size_t)(eq - item));
		if (!word)
			die(EXIT_MOUNT_FAILURE, "out of memory");
		for (char *p = word; *p; p++) {
			if (*p == '_')
				*p = '-';
		}
		is_flag = in_list(word, serve_flags, sizeof(serve_flags) / sizeof(serve_flags[0]));
		if (strcmp(word, "data-dir") == 0) {
			c->data_dir = eq + 1;
			cluster = NULL;
		} else if (strcmp(word, "name") == 0) {
			c->name = eq + 1;
			cluster = NULL;
		} else if (is_flag) {
			push(c, xconcat("--", "", word));
			push(c, eq + 1);
			cluster = strcmp(word, "initial-cluster") == 0 ? eq + 1 : NULL;
		} else if (cluster && strchr(eq + 1, ':')) {
			cluster = xconcat(cluster, ",", item);
			c->argv[c->argc - 1] = cluster;
		} else {
			fuse_opt_add(c, item);
			cluster = NULL;
		}
		free(word);
	}
}

/* mkdir -p, for a data dir that does not exist yet. */
static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || !*p) {
			char saved = *p;

			*p = 0;
			if (mkdir(buf, 0700) < 0 && errno != EEXIST)
				return -errno;
			*p = saved;
			if (!saved)
				return 0;
		}
	}
}

/* The quorumfs binary next to our own executable, else "quorumfs" (PATH). */
static const char *find_daemon(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *slash;

	if (n > 0) {
		path[n] = 0;
		slash = strrchr(path, '/');
		if (slash && (size_t)(slash - path) + sizeof("/quorumfs") <= sizeof(path)) {
			strcpy(slash, "/quorumfs");
			if (access(path, X_OK) == 0)
				return path;
		}
	}
	return "quorumfs";
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = 0;
}

/* Is dir a fuse.quorumfs mount point in /proc/self/mountinfo? */
static int is_mounted(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192];
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent maj:min root MOUNTPOINT opts [optional...] - FSTYPE ... */
		char *save = NULL, *mnt = NULL, *sep = strstr(line, " - ");
		char *tok = strtok_r(line, " ", &save);

		for (int i = 1; tok && i < 5; i++)
			tok = strtok_r(NULL, " ", &save);
		mnt = tok;
		if (!mnt || !sep)
			continue;
		unescape(mnt);
		found = strcmp(mnt, dir) == 0 && strncmp(sep + 3, "fuse.quorumfs ", 14) == 0;
	}
	fclose(f);
	return found;
}

static int status_readable(const char *dir)
{
	char path[PATH_MAX + sizeof("/.quorumfs/status")], buf[64];
	int fd, ok;

	snprintf(path, sizeof(path), "%s/.quorumfs/status", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ok = read(fd, buf, sizeof(buf)) > 0;
	close(fd);
	return ok;
}

/*
 * The line of the log written since offset that best explains a failure: the
 * last error-level line, else the last line.
 */
static void last_log_line(const char *log, off_t offset, char *out, size_t outlen)
{
	char buf[16384];
	int fd = open(log, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;
	char *best = NULL, *last = NULL, *save = NULL;

	snprintf(out, outlen, "no log output (see %s)", log);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size - offset > (off_t)sizeof(buf) - 1)
		offset = st.st_size - (off_t)sizeof(buf) + 1;
	n = pread(fd, buf, sizeof(buf) - 1, offset);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		last = l;
		if (strstr(l, " error ") || strstr(l, "\"level\":\"error\""))
			best = l;
	}
	if (best || last)
		snprintf(out, outlen, "%s", best ? best : last);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static pid_t start_daemon(struct cmd *c, const char *log)
{
	pid_t pid = fork();
	int fd;

	if (pid != 0)
		return pid;
	setsid();
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0640);
	if (fd < 0) {
		fprintf(stderr, "mount.quorumfs: cannot open %s: %s\n", log, strerror(errno));
		_exit(127);
	}
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	execvp(c->argv[0], (char *const *)c->argv);
	fprintf(stderr, "mount.quorumfs: cannot execute %s: %s\n", c->argv[0], strerror(errno));
	_exit(127);
}

/* Waits for the mount; returns 0 when ready, else why it is not in msg. */
static int wait_ready(pid_t pid, const char *dir, const char *log, off_t log_start, char *msg,
		      size_t msglen)
{
	char line[1024];
	int status;

	for (long waited = 0; waited < READY_TIMEOUT_MS; waited += POLL_MS) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			last_log_line(log, log_start, line, sizeof(line));
			snprintf(msg, msglen, "quorumfs serve failed: %s", line);
			return -1;
		}
		if (is_mounted(dir) && status_readable(dir))
			return 0;
		sleep_ms(POLL_MS);
	}
	kill(pid, SIGTERM);
	for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) != pid; i++)
		sleep_ms(POLL_MS);
	if (kill(pid, SIGKILL) == 0)
		waitpid(pid, &status, 0);
	if (is_mounted(dir))
		umount2(dir, MNT_DETACH);
	last_log_line(log, log_start, line, sizeof(line));
	snprintf(msg, msglen, "quorumfs serve not ready after %d s, stopped it: %s",
		 READY_TIMEOUT_MS / 1000, line);
	return -1;
}

int main(int argc, char **argv)
{
	static struct cmd c;
	char dir[PATH_MAX], data_dir[PATH_MAX], log[PATH_MAX + 16], msg[2048];
	const char *source = NULL, *mnt = NULL;
	struct stat st;
	off_t log_start = 0;
	pid_t pid;
	int err;

	push(&c, find_daemon());
	push(&c, "serve");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strncmp(a, "-o", 2) == 0) {
			const char *opts = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);

			if (!opts)
				die(EXIT_USAGE, "-o needs an argument");
			parse_opts(&c, strdup(opts));
		} else if (strcmp(a, "-t") == 0 || strcmp(a, "-N") == 0) {
			i++; /* type (we know it) / namespace (unsupported, mount(8) handles it) */
		} else if (a[0] == '-' && a[1]) {
			for (const char *f = a + 1; *f; f++) {
				if (*f == 'v')
					c.verbose = 1;
				else if (*f == 'f')
					c.fake = 1;
				else if (*f == 'r')
					fuse_opt_add(&c, "ro");
				else if (*f == 'w')
					fuse_opt_add(&c, "rw");
				else if (*f != 's' && *f != 'n')
					die(EXIT_USAGE, "unknown flag -%c (try --help)", *f);
			}
		} else if (!source) {
			source = a;
		} else if (!mnt) {
			mnt = a;
		} else {
			die(EXIT_USAGE, "unexpected argument '%s' (try --help)", a);
		}
	}
	if (!source || !mnt) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!c.data_dir || !*c.data_dir)
		die(EXIT_USAGE,
		    "missing required option data_dir=DIR (e.g. -o data_dir=/var/lib/quorumfs)");
	if (!realpath(mnt, dir))
		die(EXIT_MOUNT_FAILURE, "mount point %s: %s", mnt, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		die(EXIT_MOUNT_FAILURE, "mount point %s is not a directory", dir);
	if (is_mounted(dir))
		die(EXIT_MOUNT_FAILURE, "%s is already a quorumfs mount", dir);
	err = c.fake ? 0 : mkdirs(c.data_dir);
	if (err < 0)
		die(EXIT_MOUNT_FAILURE, "data_dir %s: %s", c.data_dir, strerror(-err));
	/* The daemon's working directory is not ours to rely on. */
	if (!realpath(c.data_dir, data_dir) && !c.fake)
		die(EXIT_MOUNT_FAILURE, "data_dir %s: %s", c.data_dir, strerror(errno));
	if (c.fake && access(data_dir, F_OK) < 0)
		snprintf(data_dir, sizeof(data_dir), "%s", c.data_dir);
	snprintf(log, sizeof(log), "%s/quorumfs.log", data_dir);
	push(&c, "--data-dir");
	push(&c, data_dir);
	if (c.name) {
		push(&c, "--name");
		push(&c, c.name);
	}
	push(&c, "--mount");
	push(&c, dir);
	if (c.fuse_opts[0]) {
		push(&c, "-o");
		push(&c, c.fuse_opts);
	}
	if (c.verbose || c.fake) {
		fputs("mount.quorumfs: running", stderr);
		for (int i = 0; i < c.argc; i++)
			fprintf(stderr, " %s", c.argv[i]);
		fprintf(stderr, " >>%s 2>&1\n", log);
	}
	if (c.fake)
		return 0;
	if (stat(log, &st) == 0)
		log_start = st.st_size;
	fflush(NULL);
	pid = start_daemon(&c, log);
	if (pid < 0)
		die(EXIT_MOUNT_FAILURE, "fork: %s", strerror(errno));
	/* Last resort if a stuck mount blocks us in open(2): SIGALRM's default
	 * action kills us, and a fatal signal aborts a waiting FUSE request. */
	alarm(READY_TIMEOUT_MS / 1000 + 15);
	if (wait_ready(pid, dir, log, log_start, msg, sizeof(msg)) < 0)
		die(EXIT_MOUNT_FAILURE, "%s", msg);
	if (c.verbose)
		fprintf(stderr, "mount.quorumfs: %s mounted, daemon pid %d\n", dir, (int)pid);
	return 0;
}
