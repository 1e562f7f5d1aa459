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
#include <stdbool.h>
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
#define TMP_PREFIX "tmp-"
#define ZCHUNK (256u << 10) /* compressed bytes per write, decompressed per step */
#define FEED_MAX (1u << 30) /* zlib counts input in uInt */

static int parse_name(const char *s, struct snapfile_name *sn)
{
	if (strlen(s) != SNAPFILE_NAME_LEN || s[16] != '-' || strcmp(s + 33, ".snap") != 0)
		return 0;
	if (!fileio_parse_hex16(s, &sn->index) || !fileio_parse_hex16(s + 17, &sn->term))
		return 0;
	memcpy(sn->name, s, SNAPFILE_NAME_LEN + 1);
	return 1;
}

/* Newest first: by index, then term. */
static int cmp_newest_first(const void *a, const void *b)
{
	const struct snapfile_name *x = a, *y = b;

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
static int list_snapshots(const char *snapdir, int remove_tmp, struct snapfile_name **out,
			  size_t *n)
{
	struct snapfile_name *v = NULL, *nv;
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
		struct snapfile_name sn;

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

int snapfile_list(const char *dir, struct snapfile_name **out, size_t *n, char *errmsg,
		  size_t errlen)
{
	char *snapdir = fileio_path_join(dir, "snap");
	int rc;

	*out = NULL;
	*n = 0;
	if (!snapdir)
		return QFS_ENOMEM;
	rc = list_snapshots(snapdir, 0, out, n);
	if (rc == QFS_ENOENT)
		fileio_set_err(errmsg, errlen, "snapfile: %s: no snapshot directory", snapdir);
	else if (rc == QFS_EIO)
		fileio_set_err(errmsg, errlen, "snapfile: %s: cannot list: %s", snapdir,
			       strerror(errno));
	else if (rc)
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory", snapdir);
	free(snapdir);
	return rc;
}

static int prune(const char *snapdir, int keep)
{
	struct snapfile_name *v;
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

/* ---- Writing --------------------------------------------------------------- */

struct snapfile_writer {
	char *path, *tmp, *dir; /* dir: where path and tmp live, for its fsync */
	int fd;
	bool tmp_made; /* tmp exists and is ours to remove */
	z_stream z;
	bool z_live;
	uint64_t index, term, raw_len, comp_len;
	uint32_t crc; /* of the compressed bytes written so far */
	uint8_t out[ZCHUNK];
};

static void header_encode(uint8_t *h, const struct snapfile_info *in, uint32_t payload_crc)
{
	memcpy(h, MAGIC, 8);
	qfs_le64_put(h + 8, in->index);
	qfs_le64_put(h + 16, in->term);
	qfs_le64_put(h + 24, in->raw_len);
	qfs_le64_put(h + 32, in->comp_len);
	qfs_le32_put(h + 40, payload_crc);
	qfs_le32_put(h + 44, (uint32_t)crc32(0, h, HEADER_CRC_COVERS));
}

/* "a/b/c" -> "a/b" and "c" (new allocations); "c" -> "." and "c". */
static int split_path(const char *path, char **dir, char **base)
{
	const char *slash = strrchr(path, '/');

	if (slash)
		*dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
	else
		*dir = strdup(".");
	*base = strdup(slash ? slash + 1 : path);
	if (*dir && *base)
		return 0;
	free(*dir);
	free(*base);
	return QFS_ENOMEM;
}

int snapfile_writer_create(const char *path, uint64_t index, uint64_t term,
			   struct snapfile_writer **out, char *errmsg, size_t errlen)
{
	static const uint8_t zeros[HEADER_BYTES];
	struct snapfile_writer *w;
	char *base = NULL, *tmpname = NULL;
	int rc = QFS_ENOMEM;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w || split_path(path, &w->dir, &base) != 0)
		goto nomem;
	w->fd = -1;
	w->index = index;
	w->term = term;
	w->path = strdup(path);
	if (!w->path || asprintf(&tmpname, TMP_PREFIX "%s.XXXXXX", base) < 0) {
		tmpname = NULL;
		goto nomem;
	}
	w->tmp = fileio_path_join(w->dir, tmpname);
	if (!w->tmp)
		goto nomem;
	/* Compressed as it comes: level 1, as for the member's snapshots. */
	if (deflateInit(&w->z, Z_BEST_SPEED) != Z_OK)
		goto nomem;
	w->z_live = true;
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: cannot create a file in %s: %s", path,
			       w->dir, strerror(errno));
		rc = QFS_EIO;
		goto fail;
	}
	w->tmp_made = true;
	/* The header goes in last, once the lengths and CRC are known. */
	if (fileio_write_all(w->fd, zeros, HEADER_BYTES) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: write: %s", w->tmp, strerror(errno));
		rc = QFS_EIO;
		goto fail;
	}
	free(base);
	free(tmpname);
	*out = w;
	return 0;

nomem:
	fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory", path);
fail:
	free(base);
	free(tmpname);
	snapfile_writer_destroy(w);
	return rc;
}

/* Runs deflate over what z holds with flush, writing what comes out. */
static int writer_deflate(struct snapfile_writer *w, int flush, char *errmsg, size_t errlen)
{
	int zrc;

	do {
		size_t n;

		w->z.next_out = w->out;
		w->z.avail_out = sizeof(w->out);
		zrc = deflate(&w->z, flush);
		if (zrc == Z_STREAM_ERROR) {
			fileio_set_err(errmsg, errlen, "snapfile: %s: compression failed", w->tmp);
			return QFS_EIO;
		}
		n = sizeof(w->out) - w->z.avail_out;
		if (n && fileio_write_all(w->fd, w->out, n) != 0) {
			fileio_set_err(errmsg, errlen, "snapfile: %s: write: %s", w->tmp,
				       strerror(errno));
			return QFS_EIO;
		}
		w->crc = (uint32_t)crc32_z(w->crc, w->out, n);
		w->comp_len += n;
	} while (w->z.avail_out == 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
	return 0;
}

int snapfile_writer_append(struct snapfile_writer *w, const uint8_t *data, size_t len, char *errmsg,
			   size_t errlen)
{
	if ((uint64_t)len > RAW_MAX - w->raw_len) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: image over the %llu-byte limit",
			       w->path, RAW_MAX);
		return QFS_EINVAL;
	}
	w->raw_len += len;
	while (len > 0) {
		size_t n = len < FEED_MAX ? len : FEED_MAX;
		int rc;

		w->z.next_in = (Bytef *)data;
		w->z.avail_in = (uInt)n;
		rc = writer_deflate(w, Z_NO_FLUSH, errmsg, errlen);
		if (rc)
			return rc;
		data += n;
		len -= n;
	}
	return 0;
}

int snapfile_writer_commit(struct snapfile_writer *w, struct snapfile_info *info, char *errmsg,
			   size_t errlen)
{
	struct snapfile_info in;
	uint8_t h[HEADER_BYTES];
	int rc;

	w->z.next_in = NULL;
	w->z.avail_in = 0;
	rc = writer_deflate(w, Z_FINISH, errmsg, errlen);
	if (rc)
		return rc;
	in = (struct snapfile_info){w->index, w->term, w->raw_len, w->comp_len};
	header_encode(h, &in, w->crc);
	if (pwrite(w->fd, h, HEADER_BYTES, 0) != (ssize_t)HEADER_BYTES || fsync(w->fd) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: write: %s", w->tmp, strerror(errno));
		return QFS_EIO;
	}
	rc = close(w->fd);
	w->fd = -1;
	if (rc != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: close: %s", w->tmp, strerror(errno));
		return QFS_EIO;
	}
	if (rename(w->tmp, w->path) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: rename %s to %s: %s", w->tmp, w->path,
			       strerror(errno));
		return QFS_EIO;
	}
	w->tmp_made = false; /* in place now: nothing for destroy to remove */
	/* Only once the rename is durable may a member compact its WAL. */
	if (fileio_fsync_dir(w->dir) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: fsync: %s", w->dir, strerror(errno));
		return QFS_EIO;
	}
	if (info)
		*info = in;
	return 0;
}

void snapfile_writer_destroy(struct snapfile_writer *w)
{
	if (!w)
		return;
	if (w->z_live)
		deflateEnd(&w->z);
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_made)
		unlink(w->tmp);
	free(w->tmp);
	free(w->path);
	free(w->dir);
	free(w);
}

int snapfile_write(const char *dir, uint64_t index, uint64_t term, const uint8_t *data, size_t len,
		   int keep)
{
	char name[SNAPFILE_NAME_LEN + 1], err[512];
	struct snapfile_writer *w = NULL;
	char *snapdir, *final = NULL;
	int rc;

	if ((uint64_t)len > RAW_MAX || (len && !data))
		return QFS_EINVAL;
	snapdir = fileio_path_join(dir, "snap");
	if (!snapdir)
		return QFS_ENOMEM;
	if (mkdir(snapdir, 0700) == 0) {
		if (fileio_fsync_dir(dir) != 0) {
			LOG_ERROR("snapfile: %s: fsync: %s", dir, strerror(errno));
			rc = QFS_EIO;
			goto cleanup;
		}
	} else if (errno != EEXIST) {
		LOG_ERROR("snapfile: %s: mkdir: %s", snapdir, strerror(errno));
		rc = QFS_EIO;
		goto cleanup;
	}
	snprintf(name, sizeof(name), "%016" PRIx64 "-%016" PRIx64 ".snap", index, term);
	final = fileio_path_join(snapdir, name);
	if (!final) {
		rc = QFS_ENOMEM;
		goto cleanup;
	}
	err[0] = '\0';
	rc = snapfile_writer_create(final, index, term, &w, err, sizeof(err));
	if (!rc)
		rc = snapfile_writer_append(w, data, len, err, sizeof(err));
	if (!rc)
		rc = snapfile_writer_commit(w, NULL, err, sizeof(err));
	if (rc) {
		LOG_ERROR("%s", err[0] ? err : qfs_strerror(rc));
		goto cleanup;
	}
	/* The new snapshot is durable: old ones left behind cost only disk. */
	if (prune(snapdir, keep) != 0)
		LOG_ERROR("snapfile: %s: could not delete old snapshots", snapdir);
cleanup:
	snapfile_writer_destroy(w);
	free(final);
	free(snapdir);
	return rc;
}

/* ---- Reading --------------------------------------------------------------- */

/* Checks the 48 header bytes of path (size bytes long) into *info. */
static int header_check(const char *path, const uint8_t *h, uint64_t size,
			struct snapfile_info *info, char *errmsg, size_t errlen)
{
	const char *base = strrchr(path, '/');
	struct snapfile_name sn;

	if (memcmp(h, MAGIC, 8) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad magic (not a quorumfs snapshot)",
			       path);
		return QFS_ECORRUPT;
	}
	if ((uint32_t)crc32(0, h, HEADER_CRC_COVERS) != qfs_le32_get(h + 44)) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad header CRC", path);
		return QFS_ECORRUPT;
	}
	*info = (struct snapfile_info){qfs_le64_get(h + 8), qfs_le64_get(h + 16),
				       qfs_le64_get(h + 24), qfs_le64_get(h + 32)};
	if (parse_name(base ? base + 1 : path, &sn) &&
	    (info->index != sn.index || info->term != sn.term)) {
		fileio_set_err(errmsg, errlen,
			       "snapfile: %s: header says index %" PRIu64 " term %" PRIu64
			       ", not what the file name says",
			       path, info->index, info->term);
		return QFS_ECORRUPT;
	}
	if (info->raw_len > RAW_MAX || info->raw_len >= SIZE_MAX) {
		fileio_set_err(errmsg, errlen,
			       "snapfile: %s: raw length %" PRIu64 " is over the %llu-byte limit",
			       path, info->raw_len, RAW_MAX);
		return QFS_ECORRUPT;
	}
	if (info->comp_len != size - HEADER_BYTES) {
		fileio_set_err(errmsg, errlen,
			       "snapfile: %s: header says %" PRIu64
			       " compressed bytes, file holds %" PRIu64 " (truncated or extended)",
			       path, info->comp_len, size - HEADER_BYTES);
		return QFS_ECORRUPT;
	}
	return 0;
}

/*
 * Decompresses comp (CRC already checked) into raw (raw_len + 1 bytes, the
 * spare one showing a stream longer than the header says), or with raw NULL
 * through a scratch buffer, only to verify it.
 */
static int inflate_check(const char *path, const uint8_t *comp, uint64_t comp_len, uint8_t *raw,
			 uint64_t raw_len, char *errmsg, size_t errlen)
{
	uint64_t limit = raw_len + 1, produced = 0, fed = 0;
	uint8_t *scratch = NULL;
	z_stream z = {0};
	int zrc = Z_OK, rc = 0;

	if (!raw && !(scratch = malloc(ZCHUNK)))
		goto nomem;
	if (inflateInit(&z) != Z_OK)
		goto nomem;
	while (zrc != Z_STREAM_END && produced < limit) {
		uint64_t room = limit - produced;
		size_t step = raw ? (room < FEED_MAX ? (size_t)room : FEED_MAX)
				  : (room < ZCHUNK ? (size_t)room : ZCHUNK);

		if (z.avail_in == 0 && fed < comp_len) {
			size_t n = comp_len - fed < FEED_MAX ? (size_t)(comp_len - fed) : FEED_MAX;

			z.next_in = (Bytef *)comp + fed;
			z.avail_in = (uInt)n;
			fed += n;
		}
		z.next_out = raw ? raw + produced : scratch;
		z.avail_out = (uInt)step;
		zrc = inflate(&z, Z_NO_FLUSH);
		produced += step - z.avail_out;
		if (zrc == Z_MEM_ERROR) {
			inflateEnd(&z);
			goto nomem;
		}
		/* No progress with all input given: the stream is cut short. */
		if (zrc == Z_BUF_ERROR && z.avail_in == 0 && fed == comp_len)
			zrc = Z_DATA_ERROR;
		if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
			fileio_set_err(errmsg, errlen,
				       "snapfile: %s: compressed data invalid (zlib error %d)",
				       path, zrc);
			rc = QFS_ECORRUPT;
			break;
		}
	}
	inflateEnd(&z);
	if (!rc && zrc != Z_STREAM_END) {
		fileio_set_err(errmsg, errlen,
			       "snapfile: %s: decompresses to more than %" PRIu64
			       " bytes but the header says %" PRIu64,
			       path, raw_len, raw_len);
		rc = QFS_ECORRUPT;
	} else if (!rc && produced != raw_len) {
		fileio_set_err(errmsg, errlen,
			       "snapfile: %s: decompresses to %" PRIu64
			       " bytes but the header says %" PRIu64,
			       path, produced, raw_len);
		rc = QFS_ECORRUPT;
	}
	free(scratch);
	return rc;
nomem:
	fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory decompressing", path);
	free(scratch);
	return QFS_ENOMEM;
}

int snapfile_read(const char *path, struct snapfile_info *info, uint8_t **data, size_t *len,
		  char *errmsg, size_t errlen)
{
	uint8_t h[HEADER_BYTES];
	uint8_t *comp = NULL, *raw = NULL;
	struct snapfile_info in;
	struct stat st;
	uint64_t size;
	int fd, rc;

	if (data) {
		*data = NULL;
		*len = 0;
	}
	if (errmsg && errlen)
		errmsg[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: open: %s", path, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: not a regular file", path);
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
	rc = header_check(path, h, size, &in, errmsg, errlen);
	if (rc)
		goto cleanup_fd;
	/* comp_len is now backed by the real file size. */
	comp = malloc(in.comp_len ? (size_t)in.comp_len : 1);
	if (!comp) {
		rc = QFS_ENOMEM;
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory", path);
		goto cleanup_fd;
	}
	if (read_full(fd, comp, (size_t)in.comp_len, HEADER_BYTES) != 0)
		goto read_error;
	if ((uint32_t)crc32_z(0, comp, (size_t)in.comp_len) != qfs_le32_get(h + 40)) {
		fileio_set_err(errmsg, errlen, "snapfile: %s: bad payload CRC", path);
		rc = QFS_ECORRUPT;
		goto cleanup_comp;
	}
	if (data && !(raw = malloc((size_t)in.raw_len + 1))) {
		rc = QFS_ENOMEM;
		fileio_set_err(errmsg, errlen, "snapfile: %s: out of memory for %" PRIu64 " bytes",
			       path, in.raw_len);
		goto cleanup_comp;
	}
	rc = inflate_check(path, comp, in.comp_len, raw, in.raw_len, errmsg, errlen);
	if (rc) {
		free(raw);
		goto cleanup_comp;
	}
	if (data) {
		*data = raw;
		*len = (size_t)in.raw_len;
	}
	if (info)
		*info = in;
	goto cleanup_comp;

read_error:
	if (errno)
		fileio_set_err(errmsg, errlen, "snapfile: %s: read: %s", path, strerror(errno));
	else
		fileio_set_err(errmsg, errlen, "snapfile: %s: file shrank while reading", path);
	rc = QFS_EIO;
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
	struct snapfile_name *v;
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
	/* The name was parsed, so snapfile_read holds the header to it. */
	rc = snapfile_read(path, NULL, data, len, errmsg, errlen);
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
