/*
 * Snapshot files: see snapfile.h for the format.
 *
 * Compression uses zlib level 1 (Z_BEST_SPEED): the image is key paths and
 * small config values, where level 1 already gets most of the ratio at a
 * fraction of the CPU time of the default level, and a snapshot that is
 * quick to write keeps the WAL it lets us compact short.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../common/codec.h"
#include "../common/errors.h"
#include "../common/log.h"
#include "fileio.h"
#include "snapfile.h"

#define MAGIC "QFSSNAP1"
#define HEADER_BYTES 48u
#define HEADER_CRC_COVERS 40u
#define RAW_MAX (8ull << 30) /* larger is corruption (or a store we cannot hold) */
#define NAME_LEN 38	     /* 16 hex - 16 hex .snap */
#define TMP_PREFIX "tmp-"

struct snapname {
	uint64_t index, term;
	char name[NAME_LEN + 1];
};

static int parse_name(const char *s, struct snapname *sn)
{
	if (strlen(s) != NAME_LEN || s[16] != '-' || strcmp(s + 33, ".snap") != 0)
		return 0;
	if (!fileio_parse_hex16(s, &sn->index) || !fileio_parse_hex16(s + 17, &sn->term))
		return 0;
	memcpy(sn->name, s, NAME_LEN + 1);
	return 1;
}

/* Newest first: by index, then term. */
static int cmp_newest_first(const void *a, const void *b)
{
	const struct snapname *x = a, *y = b;

	if (x->index != y->index)
		return x->index > y->index ? -1 : 1;
	if (x->term != y->term)
		return x->term > y->term ? -1 : 1;
	return 0;
}

/* Reads exactly n bytes at off; a short file is reported as errno 0. */
static int read_full(int fd, uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t k = pread(fd, p, n, (off_t)off);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0) {
			errno = 0;
			return -1;
		}
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

/*
 * Lists the snapshot files in snapdir, newest first. Leftover temporary
 * files are from a write that crashed before its rename: they are deleted
 * when remove_tmp is set.
 */
static int list_snapshots(const char *snapdir, int remove_tmp, struct snapname **out, size_t *n)
{
	struct snapname *v = NULL, *nv;
	size_t len = 0, cap = 0;
	int removed = 0, rc = 0, err;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*n = 0;
	d = opendir(snapdir);
	if (!d)
		return errno == ENOENT ? QFS_ENOENT : QFS_EIO;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		struct snapname sn;

		if (remove_tmp && strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
				LOG_INFO("snapfile: %s: removed unfinished snapshot %s", snapdir,
					 de->d_name);
				removed = 1;
			}
			continue;
		}
		if (!parse_name(de->d_name, &sn))
			continue;
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = QFS_ENOMEM;
				goto cleanup;
			}
			v = nv;
		}
		v[len++] = sn;
	}
	if (errno) {
		rc = QFS_EIO;
		goto cleanup;
	}
	if (removed)
		fileio_fsync_dir(snapdir); /* tidiness only: a tmp file coming back is harmless */
	if (len > 1)
		qsort(v, len, sizeof(*v), cmp_newest_first);
	*out = v;
	*n = len;
	v = NULL;
cleanup:
	err = errno; /* for the caller's message, past closedir() */
	free(v);
	closedir(d);
	errno = err;
	return rc;
}

static int prune(const char *snapdir, int keep)
{
	struct snapname *v;
	size_t n;
	int rc, removed = 0;

	if (keep < 1)
		keep = 1;
	rc = list_snapshots(snapdir, 0, &v, &n);
	if (rc)
		return rc == QFS_ENOENT ? QFS_EIO : rc;
	for (size_t i = (size_t)keep; i < n; i++) {
		char *path = fileio_path_join(snapdir, v[i].name);

		if (!path) {
			rc = QFS_ENOMEM;
			break;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			LOG_ERROR("snapfile: %s: unlink: %s", path, strerror(errno));
			rc = QFS_EIO;
		} else {
			removed = 1;
		}
		free(path);
	}
	if (removed && fileio_fsync_dir(snapdir) != 0) {
		LOG_ERROR("snapfile: %s: fsync: %s", snapdir, strerror(errno));
		rc = QFS_EIO;
	}
	free(v);
	return rc;
}

int snapfile_write(const char *dir, uint64_t index, uint64_t term, const uint8_t *data, size_t len,
		   int keep)
{
	static const uint8_t empty[1];
	char name[NAME_LEN + 1];
	char *snapdir, *tmp = NULL, *final = NULL;
	uint8_t *buf;
	uLongf clen;
	int fd = -1, rc, zrc;

	if ((uint64_t)len > RAW_MAX || (len && !data))
		return QFS_EINVAL;
	snapdir = fileio_path_join(dir, "snap");
	if (!snapdir)
		return QFS_ENOMEM;
	if (mkdir(snapdir, 0700) == 0) {
		if (fileio_fsync_dir(dir) != 0) {
			LOG_ERROR("snapfile: %s: fsync: %s", dir, strerror(errno));
			rc = QFS_EIO;
			goto cleanup_snapdir;
		}
	} else if (errno != EEXIST) {
		LOG_ERROR("snapfile: %s: mkdir: %s", snapdir, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_snapdir;
	}

	clen = compressBound((uLong)len);
	buf = malloc(HEADER_BYTES + clen);
	if (!buf) {
		rc = QFS_ENOMEM;
		goto cleanup_snapdir;
	}
	zrc = compress2(buf + HEADER_BYTES, &clen, len ? data : empty, (uLong)len, Z_BEST_SPEED);
	if (zrc != Z_OK) {
		rc = zrc == Z_MEM_ERROR ? QFS_ENOMEM : QFS_EIO;
		goto cleanup_buf;
	}
	memcpy(buf, MAGIC, 8);
	qfs_le64_put(buf + 8, index);
	qfs_le64_put(buf + 16, term);
	qfs_le64_put(buf + 24, (uint64_t)len);
	qfs_le64_put(buf + 32, (uint64_t)clen);
	qfs_le32_put(buf + 40, (uint32_t)crc32_z(0, buf + HEADER_BYTES, clen));
	qfs_le32_put(buf + 44, (uint32_t)crc32(0, buf, HEADER_CRC_COVERS));

	snprintf(name, sizeof(name), "%016" PRIx64 "-%016" PRIx64 ".snap", index, term);
	tmp = fileio_path_join(snapdir, TMP_PREFIX "XXXXXX");
	final = fileio_path_join(snapdir, name);
	if (!tmp || !final) {
		rc = QFS_ENOMEM;
		goto cleanup_names;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		LOG_ERROR("snapfile: %s: create: %s", tmp, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_names;
	}
	if (fileio_write_all(fd, buf, HEADER_BYTES + clen) != 0 || fsync(fd) != 0) {
		LOG_ERROR("snapfile: %s: write: %s", tmp, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_tmp;
	}
	if (close(fd) != 0) {
		fd = -1;
		LOG_ERROR("snapfile: %s: close: %s", tmp, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_tmp;
	}
	fd = -1;
	if (rename(tmp, final) != 0) {
		LOG_ERROR("snapfile: rename %s to %s: %s", tmp, final, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_tmp;
	}
	/* Only once the rename is durable may the caller compact the WAL. */
	if (fileio_fsync_dir(snapdir) != 0) {
		LOG_ERROR("snapfile: %s: fsync: %s", snapdir, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_names;
	}
	/* The new snapshot is durable: old ones left behind cost only disk. */
	if (prune(snapdir, keep) != 0)
		LOG_ERROR("snapfile: %s: could not delete old snapshots", snapdir);
	rc = 0;
	goto cleanup_names;

cleanup_tmp:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
cleanup_names:
	free(final);
	free(tmp);
cleanup_buf:
	free(buf);
cleanup_snapdir:
	free(snapdir);
	return rc;
}

/* Reads and verifies one snapshot file; see snapfile_load(). */
static int load_file(const char *path, const struct snapname *sn, uint8_t **data, size_t *len,
		     char *errmsg, size_t errlen)
{
	uint8_t h[HEADER_BYTES];
	uint8_t *comp = NULL, *raw = NULL;
	uint64_t size, raw_len, comp_len;
	uLongf got;
	struct stat st;
	int fd, rc, zrc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: open: %s", path, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_fd;
	}
	size = (uint64_t)st.st_size;
	if (size < HEADER_BYTES) {
		fileio_set_err(errmsg, errlen,
			"snapfile: %s: file is %" PRIu64 " bytes, shorter than the %u-byte header",
			path, size, HEADER_BYTES);
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	if (read_full(fd, h, HEADER_BYTES, 0) != 0)
		goto read_error;
	if (memcmp(h, MAGIC, 8) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad magic (not a quorumfs snapshot)", path);
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	if ((uint32_t)crc32(0, h, HEADER_CRC_COVERS) != qfs_le32_get(h + 44)) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad header CRC", path);
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	if (qfs_le64_get(h + 8) != sn->index || qfs_le64_get(h + 16) != sn->term) {
		fileio_set_err(errmsg, errlen,
			"snapfile: %s: header says index %" PRIu64 " term %" PRIu64
			", not what the file name says",
			path, qfs_le64_get(h + 8), qfs_le64_get(h + 16));
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	raw_len = qfs_le64_get(h + 24);
	comp_len = qfs_le64_get(h + 32);
	if (raw_len > RAW_MAX || raw_len >= SIZE_MAX) {
		fileio_set_err(errmsg, errlen,
			"snapfile: %s: raw length %" PRIu64 " is over the %llu-byte limit", path,
			raw_len, RAW_MAX);
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	if (comp_len != size - HEADER_BYTES) {
		fileio_set_err(errmsg, errlen,
			"snapfile: %s: header says %" PRIu64
			" compressed bytes, file holds %" PRIu64 " (truncated or extended)",
			path, comp_len, size - HEADER_BYTES);
		rc = QFS_ECORRUPT;
		goto cleanup_fd;
	}
	/* comp_len is now backed by the real file size. */
	comp = malloc(comp_len ? (size_t)comp_len : 1);
	if (!comp) {
		rc = QFS_ENOMEM;
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory", path);
		goto cleanup_fd;
	}
	if (read_full(fd, comp, (size_t)comp_len, HEADER_BYTES) != 0)
		goto read_error;
	if ((uint32_t)crc32_z(0, comp, (size_t)comp_len) != qfs_le32_get(h + 40)) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad payload CRC", path);
		rc = QFS_ECORRUPT;
		goto cleanup_comp;
	}
	/* One spare byte: a stream longer than raw_len then shows as
	 * got > raw_len instead of an ambiguous full buffer. */
	raw = malloc((size_t)raw_len + 1);
	if (!raw) {
		rc = QFS_ENOMEM;
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory for %" PRIu64 " bytes", path,
			raw_len);
		goto cleanup_comp;
	}
	got = (uLongf)raw_len + 1;
	zrc = uncompress(raw, &got, comp, (uLong)comp_len);
	if (zrc == Z_MEM_ERROR) {
		rc = QFS_ENOMEM;
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory decompressing", path);
		goto cleanup_raw;
	}
	if (zrc == Z_BUF_ERROR || (zrc == Z_OK && got != raw_len)) {
		fileio_set_err(errmsg, errlen,
			"snapfile: %s: decompresses to %s%" PRIu64
			" bytes but the header says %" PRIu64,
			path, zrc == Z_BUF_ERROR ? "more than " : "",
			zrc == Z_BUF_ERROR ? raw_len : (uint64_t)got, raw_len);
		rc = QFS_ECORRUPT;
		goto cleanup_raw;
	}
	if (zrc != Z_OK) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: compressed data invalid (zlib error %d)",
			path, zrc);
		rc = QFS_ECORRUPT;
		goto cleanup_raw;
	}
	free(comp);
	close(fd);
	*data = raw;
	*len = (size_t)raw_len;
	return 0;

read_error:
	if (errno)
		fileio_set_err(errmsg, errlen, "snapfile: %s: read: %s", path, strerror(errno));
	else
		fileio_set_err(errmsg, errlen, "snapfile: %s: file shrank while reading", path);
	rc = QFS_EIO;
	goto cleanup_comp;
cleanup_raw:
	free(raw);
cleanup_comp:
	free(comp);
cleanup_fd:
	if (fd >= 0)
		close(fd);
	return rc;
}

int snapfile_load(const char *dir, uint64_t *index, uint64_t *term, uint8_t **data, size_t *len,
		  char *errmsg, size_t errlen)
{
	struct snapname *v;
	char *snapdir, *path;
	size_t n;
	int rc;

	*data = NULL;
	*len = 0;
	if (errmsg && errlen)
		errmsg[0] = '\0';
	snapdir = fileio_path_join(dir, "snap");
	if (!snapdir)
		return QFS_ENOMEM;
	rc = list_snapshots(snapdir, 1, &v, &n);
	if (rc) {
		if (rc == QFS_EIO)
			fileio_set_err(errmsg, errlen, "snapfile: %s: cannot list: %s", snapdir,
				strerror(errno));
		else if (rc == QFS_ENOENT)
			fileio_set_err(errmsg, errlen, "snapfile: %s: no snapshot directory", snapdir);
		goto cleanup_snapdir;
	}
	if (n == 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: no snapshot", snapdir);
		rc = QFS_ENOENT;
		goto cleanup_list;
	}
	path = fileio_path_join(snapdir, v[0].name);
	if (!path) {
		rc = QFS_ENOMEM;
		goto cleanup_list;
	}
	rc = load_file(path, &v[0], data, len, errmsg, errlen);
	if (rc == 0) {
		*index = v[0].index;
		*term = v[0].term;
	}
	free(path);
cleanup_list:
	free(v);
cleanup_snapdir:
	free(snapdir);
	return rc;
}
