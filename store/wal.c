/*
 * Write-ahead log segments: see wal.h for the format and the recovery rules.
 *
 * wal_open() makes two passes. The first verifies every record (CRCs,
 * structure, index continuity) and truncates a torn tail; only when the
 * whole WAL is sound does the second pass hand records to the caller, so a
 * WAL that is refused never feeds half a log into the state machine.
 *
 * Every segment after the first starts with a copy of the latest hard state,
 * so deleting older segments in wal_compact() can never lose the vote.
 *
 * wal_inspect() is the same reading for tools, in one read-only pass: the
 * records and their places go to the caller as they are read.
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
#include "wal.h"

#define HEADER_BYTES 12u    /* length, header CRC, payload CRC */
#define ENTRY_FIXED 17u	    /* type, index, term */
#define HARDSTATE_BYTES 25u /* type, term, vote, commit */
#define SNAPSHOT_BYTES 17u  /* type, index, term */
#define READ_CHUNK (1u << 20)
#define SEGMENT_NAME_LEN 20 /* 16 hex digits + ".wal" */
#define REFUSE "; refusing to start" /* what damage means to wal_open */

struct segment {
	uint64_t name;	    /* from the file name; orders segments by creation */
	uint64_t max_index; /* largest entry index in it, 0 if it has none */
};

struct wal {
	char *dir;	      /* DIR/wal */
	int fd;		      /* the last segment, opened for appending */
	uint64_t seg_bytes;   /* size of the last segment */
	uint64_t seg_limit;   /* rotate once seg_bytes is over this */
	struct segment *segs; /* oldest first; the last one is appended to */
	size_t nsegs;
	size_t segcap;
	uint64_t last_index;
	int have_hs;
	uint64_t hs_term, hs_vote, hs_commit;
	int failed;
};

/* A window over one segment file, so records are not one pread(2) each. */
struct reader {
	int fd;
	uint64_t size;
	uint8_t *buf;
	size_t cap;
	uint64_t start; /* file offset of buf[0] */
	size_t len;	/* valid bytes in buf */
};

enum scan_mode {
	SCAN_REPAIR,  /* wal_open's first pass: verify, truncate a torn tail */
	SCAN_REPLAY,  /* wal_open's second pass: records to cb */
	SCAN_INSPECT, /* wal_inspect: records with their places, nothing written */
};

/* State carried through the segments by a pass. */
struct scan {
	enum scan_mode mode;
	uint64_t after_index;
	int (*cb)(void *arg, const struct wal_record *rec); /* NULL: verify only */
	void *arg;
	const struct wal_inspect_cb *inspect; /* SCAN_INSPECT */
	const char *refuse;		      /* after a damage message: what that means */
	uint64_t prev;	/* last index of the log as replayed, for gap checks */
	int seen_entry; /* any entry so far, skipped or not */
	uint64_t last_index;
	int have_hs;
	uint64_t hs_term, hs_vote, hs_commit;
	uint64_t records, entries, first_index, last_term; /* for wal_summary */
	uint64_t seg_records, seg_size;			   /* the segment being read */
	char *errmsg;
	size_t errlen;
};

static char *segment_path(const char *dir, uint64_t name)
{
	char base[SEGMENT_NAME_LEN + 1];

	snprintf(base, sizeof(base), "%016" PRIx64 ".wal", name);
	return fileio_path_join(dir, base);
}

static int parse_segment_name(const char *s, uint64_t *name)
{
	if (strlen(s) != SEGMENT_NAME_LEN || strcmp(s + 16, ".wal") != 0)
		return 0;
	return fileio_parse_hex16(s, name);
}

/* Makes file bytes [off, off + n) available at *p; off + n <= size. */
static int reader_get(struct reader *r, uint64_t off, size_t n, const uint8_t **p)
{
	size_t want, got = 0;

	if (off >= r->start && off + n <= r->start + r->len) {
		*p = r->buf + (off - r->start);
		return 0;
	}
	if (n > r->cap || !r->buf) {
		size_t cap = n > READ_CHUNK ? n : READ_CHUNK;
		uint8_t *nb = realloc(r->buf, cap);

		if (!nb)
			return QFS_ENOMEM;
		r->buf = nb;
		r->cap = cap;
	}
	want = r->size - off < r->cap ? (size_t)(r->size - off) : r->cap;
	r->len = 0;
	while (got < want) {
		ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return QFS_EIO;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	r->start = off;
	r->len = got;
	if (got < n) {
		errno = EIO; /* the file shrank under us */
		return QFS_EIO;
	}
	*p = r->buf;
	return 0;
}

/* Whether every byte from off to the end of the file is zero. */
static int tail_is_zero(struct reader *r, uint64_t off, int *zero)
{
	const uint8_t *p;
	int rc;

	*zero = 0;
	while (off < r->size) {
		size_t n = r->size - off < READ_CHUNK ? (size_t)(r->size - off) : READ_CHUNK;

		rc = reader_get(r, off, n, &p);
		if (rc)
			return rc;
		for (size_t i = 0; i < n; i++)
			if (p[i])
				return 0;
		off += n;
	}
	*zero = 1;
	return 0;
}

/*
 * Checks one entry's index against the log replayed so far. An index at or
 * below the previous one replaces a suffix (legal); one more than previous+1
 * means entries are missing. Entries the snapshot covers leave the replayed
 * log ending at after_index.
 */
static int check_entry_index(struct scan *s, const char *path, uint64_t off, uint64_t index,
			     int *skip)
{
	*skip = 0;
	if (index <= s->after_index) {
		*skip = 1;
		s->prev = s->after_index;
	} else if (index > s->prev + 1) {
		if (!s->seen_entry)
			fileio_set_err(s->errmsg, s->errlen,
				       "wal: %s: first entry has index %" PRIu64
				       " at offset %" PRIu64 " but the snapshot ends at %" PRIu64
				       ": entries missing (WAL compacted past the snapshot?)%s",
				       path, index, off, s->after_index, s->refuse);
		else
			fileio_set_err(s->errmsg, s->errlen,
				       "wal: %s: entry index %" PRIu64 " at offset %" PRIu64
				       " follows index %" PRIu64
				       ": entries missing (lost segment?)%s",
				       path, index, off, s->prev, s->refuse);
		return QFS_ECORRUPT;
	} else {
		s->prev = index;
	}
	if (!s->entries || index < s->first_index)
		s->first_index = index;
	s->entries++;
	s->seen_entry = 1;
	s->last_index = index;
	return 0;
}

/*
 * Reads one segment front to back. For the last segment a torn tail is not
 * an error: *torn_at gets its offset (else UINT64_MAX) and *torn_why why.
 */
static int scan_segment(struct scan *s, const char *path, int fd, int is_last, uint64_t *max_index,
			uint64_t *torn_at, const char **torn_why)
{
	struct reader r = {.fd = fd};
	struct stat st;
	uint64_t off = 0;
	const char *what = NULL;
	int rc = 0;

	*torn_at = UINT64_MAX;
	*max_index = 0;
	s->seg_records = 0;
	if (fstat(fd, &st) != 0) {
		fileio_set_err(s->errmsg, s->errlen, "wal: %s: fstat: %s", path, strerror(errno));
		return QFS_EIO;
	}
	r.size = (uint64_t)st.st_size;
	s->seg_size = r.size;

	while (off < r.size) {
		uint64_t left = r.size - off;
		const uint8_t *h, *p;
		uint32_t len;
		int zero, skip;
		struct wal_record rec;

		if (left < HEADER_BYTES) {
			what = "record header cut short by end of file";
			if (is_last) {
				*torn_at = off;
				*torn_why = what;
				goto done;
			}
			goto corrupt;
		}
		rc = reader_get(&r, off, HEADER_BYTES, &h);
		if (rc)
			goto io_error;
		len = qfs_le32_get(h);
		if ((uint32_t)crc32(0, h, 4) != qfs_le32_get(h + 4)) {
			rc = tail_is_zero(&r, off, &zero);
			if (rc)
				goto io_error;
			if (is_last && zero) {
				*torn_at = off;
				*torn_why = "only zero bytes follow";
				goto done;
			}
			what = "bad record header CRC";
			goto corrupt;
		}
		if (len > WAL_RECORD_MAX) {
			/* The header CRC matched, so this length was written as
			 * such: no torn write explains it. */
			what = "record length over WAL_RECORD_MAX";
			goto corrupt;
		}
		if (len > left - HEADER_BYTES) {
			what = "record cut short by end of file";
			if (is_last) {
				*torn_at = off;
				*torn_why = what;
				goto done;
			}
			goto corrupt;
		}
		rc = reader_get(&r, off, HEADER_BYTES + len, &h);
		if (rc)
			goto io_error;
		p = h + HEADER_BYTES;
		if ((uint32_t)crc32(0, p, len) != qfs_le32_get(h + 8)) {
			what = "bad record CRC";
			goto corrupt;
		}

		memset(&rec, 0, sizeof(rec));
		if (len >= 1 && p[0] == WAL_ENTRY) {
			if (len < ENTRY_FIXED) {
				what = "ENTRY record too short";
				goto corrupt;
			}
			rec.type = WAL_ENTRY;
			rec.index = qfs_le64_get(p + 1);
			rec.term = qfs_le64_get(p + 9);
			rec.data = p + ENTRY_FIXED;
			rec.len = len - ENTRY_FIXED;
			if (rec.index == 0) {
				what = "ENTRY record with index 0";
				goto corrupt;
			}
			rc = check_entry_index(s, path, off, rec.index, &skip);
			if (rc)
				goto out;
			if (rec.index > *max_index)
				*max_index = rec.index;
			s->last_term = rec.term;
		} else if (len >= 1 && p[0] == WAL_HARDSTATE) {
			if (len != HARDSTATE_BYTES) {
				what = "HARDSTATE record of wrong size";
				goto corrupt;
			}
			rec.type = WAL_HARDSTATE;
			rec.hs_term = qfs_le64_get(p + 1);
			rec.hs_vote = qfs_le64_get(p + 9);
			rec.hs_commit = qfs_le64_get(p + 17);
			s->have_hs = 1;
			s->hs_term = rec.hs_term;
			s->hs_vote = rec.hs_vote;
			s->hs_commit = rec.hs_commit;
			skip = 0;
		} else if (len >= 1 && p[0] == WAL_SNAPSHOT) {
			if (len != SNAPSHOT_BYTES) {
				what = "SNAPSHOT record of wrong size";
				goto corrupt;
			}
			rec.type = WAL_SNAPSHOT;
			rec.index = qfs_le64_get(p + 1);
			rec.term = qfs_le64_get(p + 9);
			/* The log restarts after the snapshot: entries before this
			 * record are superseded and the next one is index + 1. */
			if (rec.index > s->after_index)
				s->after_index = rec.index;
			s->prev = rec.index;
			if (rec.index > *max_index)
				*max_index = rec.index;
			s->last_term = rec.term;
			skip = 0;
		} else {
			what = "unknown record type";
			goto corrupt;
		}
		s->records++;
		s->seg_records++;
		if (s->inspect && s->inspect->record) {
			struct wal_pos pos = {path, off, HEADER_BYTES + len, skip};

			rc = s->inspect->record(s->inspect->arg, &rec, &pos);
			if (rc)
				goto out;
		} else if (s->cb && !skip) {
			rc = s->cb(s->arg, &rec);
			if (rc)
				goto out;
		}
		off += HEADER_BYTES + len;
	}
done:
	rc = 0;
	goto out;
corrupt:
	fileio_set_err(s->errmsg, s->errlen,
		       "wal: %s: %s at offset %" PRIu64 " (of %" PRIu64 " bytes)%s", path, what,
		       off, r.size, s->refuse);
	rc = QFS_ECORRUPT;
	goto out;
io_error:
	if (rc == QFS_EIO)
		fileio_set_err(s->errmsg, s->errlen, "wal: %s: read at offset %" PRIu64 ": %s", path, off,
			strerror(errno));
	else
		fileio_set_err(s->errmsg, s->errlen, "wal: %s: %s", path, qfs_strerror(rc));
out:
	free(r.buf);
	return rc;
}

static int segs_push(struct wal *w, uint64_t name)
{
	if (w->nsegs == w->segcap) {
		size_t cap = w->segcap ? w->segcap * 2 : 8;
		struct segment *ns = realloc(w->segs, cap * sizeof(*ns));

		if (!ns)
			return QFS_ENOMEM;
		w->segs = ns;
		w->segcap = cap;
	}
	w->segs[w->nsegs].name = name;
	w->segs[w->nsegs].max_index = 0;
	w->nsegs++;
	return 0;
}

static int cmp_segment(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;

	return x->name < y->name ? -1 : x->name > y->name;
}

/* Fills w->segs with the segment files in DIR/wal, oldest first. */
static int list_segments(struct wal *w, char *errmsg, size_t errlen)
{
	DIR *d = opendir(w->dir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		fileio_set_err(errmsg, errlen, "wal: %s: opendir: %s", w->dir, strerror(errno));
		return QFS_EIO;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t name;

		if (!parse_segment_name(de->d_name, &name)) {
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				LOG_WARN("wal: %s: ignoring unexpected file %s", w->dir,
					 de->d_name);
			continue;
		}
		rc = segs_push(w, name);
		if (rc) {
			fileio_set_err(errmsg, errlen, "wal: %s: out of memory", w->dir);
			goto cleanup;
		}
	}
	if (errno) {
		fileio_set_err(errmsg, errlen, "wal: %s: readdir: %s", w->dir, strerror(errno));
		rc = QFS_EIO;
		goto cleanup;
	}
	if (w->nsegs > 1)
		qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_segment);
cleanup:
	closedir(d);
	return rc;
}

/* Creates segment `name`, appends it to w->segs and makes it current. */
static int segment_create(struct wal *w, uint64_t name)
{
	char *path = segment_path(w->dir, name);
	int fd, rc;

	if (!path)
		return QFS_ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		LOG_ERROR("wal: %s: create: %s", path, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_path;
	}
	/* The new name must survive a crash, or its records would vanish. */
	if (fileio_fsync_dir(w->dir) != 0) {
		LOG_ERROR("wal: %s: fsync: %s", w->dir, strerror(errno));
		rc = QFS_EIO;
		goto cleanup_fd;
	}
	rc = segs_push(w, name);
	if (rc)
		goto cleanup_fd;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	w->seg_bytes = 0;
	free(path);
	return 0;

cleanup_fd:
	close(fd);
	unlink(path);
cleanup_path:
	free(path);
	return rc;
}

static int make_wal_dir(const char *dir, const char *wal_dir, char *errmsg, size_t errlen)
{
	if (mkdir(wal_dir, 0700) == 0) {
		if (fileio_fsync_dir(dir) != 0) {
			fileio_set_err(errmsg, errlen, "wal: %s: fsync: %s", dir, strerror(errno));
			return QFS_EIO;
		}
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	fileio_set_err(errmsg, errlen, "wal: %s: mkdir: %s", wal_dir, strerror(errno));
	return QFS_EIO;
}

/* Gives the inspecting caller a segment it has read. */
static int segment_done(struct scan *s, const char *path, uint64_t torn_at, const char *why)
{
	struct wal_segment_info info = {path, s->seg_size, s->seg_records, torn_at, why};

	if (!s->inspect || !s->inspect->segment)
		return 0;
	return s->inspect->segment(s->inspect->arg, &info);
}

/* One pass over all segments; the repair pass also truncates a torn tail,
 * the inspect pass only reports it (in sum, which it may be given). */
static int scan_all(struct wal *w, struct scan *s, struct wal_summary *sum)
{
	int rc = 0;

	for (size_t i = 0; i < w->nsegs; i++) {
		int is_last = i + 1 == w->nsegs;
		char *path = segment_path(w->dir, w->segs[i].name);
		uint64_t max_index, torn_at;
		const char *why = NULL;
		int fd;

		if (!path) {
			fileio_set_err(s->errmsg, s->errlen, "wal: %s: out of memory", w->dir);
			return QFS_ENOMEM;
		}
		fd =
		    open(path, (s->mode == SCAN_REPAIR && is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			fileio_set_err(s->errmsg, s->errlen, "wal: %s: open: %s", path, strerror(errno));
			rc = QFS_EIO;
			goto next;
		}
		rc = scan_segment(s, path, fd, is_last, &max_index, &torn_at, &why);
		if (rc)
			goto next;
		w->segs[i].max_index = max_index;
		if (torn_at != UINT64_MAX && s->mode == SCAN_INSPECT && sum) {
			sum->torn = 1;
			sum->torn_offset = torn_at;
			sum->torn_bytes = s->seg_size - torn_at;
			sum->torn_why = why;
			snprintf(sum->torn_file, sizeof(sum->torn_file), "%016" PRIx64 ".wal",
				 w->segs[i].name);
		} else if (torn_at != UINT64_MAX && s->mode == SCAN_REPLAY) {
			/* The repair pass truncated it: something else is
			 * writing this WAL. */
			fileio_set_err(s->errmsg, s->errlen,
				       "wal: %s: changed during recovery at offset %" PRIu64, path,
				       torn_at);
			rc = QFS_EIO;
			goto next;
		} else if (torn_at != UINT64_MAX && s->mode == SCAN_REPAIR) {
			struct stat st;

			if (fstat(fd, &st) != 0 || ftruncate(fd, (off_t)torn_at) != 0 ||
			    fsync(fd) != 0) {
				fileio_set_err(s->errmsg, s->errlen, "wal: %s: truncating torn tail: %s",
					path, strerror(errno));
				rc = QFS_EIO;
				goto next;
			}
			LOG_WARN("wal: %s: torn write at offset %" PRIu64 " (%s): dropped %" PRIu64
				 " bytes",
				 path, torn_at, why, (uint64_t)st.st_size - torn_at);
		}
		rc = segment_done(s, path, torn_at, why);
	next:
		if (fd >= 0)
			close(fd);
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

int wal_open(const char *dir, uint64_t after_index,
	     int (*cb)(void *arg, const struct wal_record *rec), void *arg, struct wal **out,
	     char *errmsg, size_t errlen)
{
	struct scan s = {.mode = SCAN_REPAIR,
			 .after_index = after_index,
			 .prev = after_index,
			 .refuse = REFUSE,
			 .errmsg = errmsg,
			 .errlen = errlen};
	struct wal *w;
	struct stat st;
	char *path = NULL;
	int rc;

	*out = NULL;
	if (errmsg && errlen)
		errmsg[0] = '\0';
	w = calloc(1, sizeof(*w));
	if (!w)
		return QFS_ENOMEM;
	w->fd = -1;
	w->seg_limit = WAL_SEGMENT_BYTES;
	w->dir = fileio_path_join(dir, "wal");
	if (!w->dir) {
		rc = QFS_ENOMEM;
		goto cleanup_wal;
	}
	rc = make_wal_dir(dir, w->dir, errmsg, errlen);
	if (rc)
		goto cleanup_wal;
	rc = list_segments(w, errmsg, errlen);
	if (rc)
		goto cleanup_wal;

	rc = scan_all(w, &s, NULL);
	if (rc)
		goto cleanup_wal;
	w->last_index = s.last_index;
	w->have_hs = s.have_hs;
	w->hs_term = s.hs_term;
	w->hs_vote = s.hs_vote;
	w->hs_commit = s.hs_commit;

	if (cb) {
		struct scan replay = {.mode = SCAN_REPLAY,
				      .after_index = after_index,
				      .prev = after_index,
				      .cb = cb,
				      .arg = arg,
				      .refuse = REFUSE,
				      .errmsg = errmsg,
				      .errlen = errlen};

		rc = scan_all(w, &replay, NULL);
		if (rc)
			goto cleanup_wal;
	}

	if (w->nsegs == 0) {
		rc = segment_create(w, after_index + 1);
		if (rc) {
			fileio_set_err(errmsg, errlen, "wal: %s: cannot create the first segment", w->dir);
			goto cleanup_wal;
		}
	} else {
		path = segment_path(w->dir, w->segs[w->nsegs - 1].name);
		if (!path) {
			rc = QFS_ENOMEM;
			goto cleanup_wal;
		}
		w->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (w->fd < 0 || fstat(w->fd, &st) != 0) {
			fileio_set_err(errmsg, errlen, "wal: %s: open: %s", path, strerror(errno));
			rc = QFS_EIO;
			goto cleanup_path;
		}
		w->seg_bytes = (uint64_t)st.st_size;
		free(path);
	}
	*out = w;
	return 0;

cleanup_path:
	free(path);
cleanup_wal:
	if (rc == QFS_ENOMEM && errmsg && errlen && !errmsg[0])
		fileio_set_err(errmsg, errlen, "wal: %s: out of memory", dir);
	wal_close(w);
	return rc;
}

int wal_inspect(const char *dir, uint64_t after_index, const struct wal_inspect_cb *cb,
		struct wal_summary *sum, char *errmsg, size_t errlen)
{
	static const struct wal_inspect_cb none;
	struct scan s = {.mode = SCAN_INSPECT,
			 .after_index = after_index,
			 .prev = after_index,
			 .inspect = cb ? cb : &none,
			 .refuse = "",
			 .errmsg = errmsg,
			 .errlen = errlen};
	struct wal_summary local;
	struct stat st;
	struct wal *w;
	int rc;

	if (errmsg && errlen)
		errmsg[0] = '\0';
	sum = sum ? sum : &local;
	memset(sum, 0, sizeof(*sum));
	w = calloc(1, sizeof(*w));
	if (!w)
		return QFS_ENOMEM;
	w->fd = -1;
	w->dir = fileio_path_join(dir, "wal");
	if (!w->dir) {
		rc = QFS_ENOMEM;
		goto out;
	}
	if (stat(w->dir, &st) != 0) {
		fileio_set_err(errmsg, errlen, "wal: %s: %s", w->dir, strerror(errno));
		rc = errno == ENOENT ? QFS_ENOENT : QFS_EIO;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		fileio_set_err(errmsg, errlen, "wal: %s: not a directory", w->dir);
		rc = QFS_EIO;
		goto out;
	}
	rc = list_segments(w, errmsg, errlen);
	if (!rc)
		rc = scan_all(w, &s, sum);
	sum->segments = w->nsegs;
	sum->records = s.records;
	sum->entries = s.entries;
	sum->first_index = s.first_index;
	sum->last_index = s.last_index;
	sum->last_term = s.last_term;
	sum->have_hs = s.have_hs;
	sum->hs_term = s.hs_term;
	sum->hs_vote = s.hs_vote;
	sum->hs_commit = s.hs_commit;
out:
	if (rc == QFS_ENOMEM && errmsg && errlen && !errmsg[0])
		fileio_set_err(errmsg, errlen, "wal: %s: out of memory", dir);
	wal_close(w);
	return rc;
}

void wal_close(struct wal *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	free(w->segs);
	free(w->dir);
	free(w);
}

static size_t record_size(const struct wal_record *r)
{
	if (r->type == WAL_ENTRY)
		return HEADER_BYTES + ENTRY_FIXED + r->len;
	return HEADER_BYTES + (r->type == WAL_SNAPSHOT ? SNAPSHOT_BYTES : HARDSTATE_BYTES);
}

static uint8_t *record_encode(uint8_t *out, const struct wal_record *r)
{
	uint8_t *p = out + HEADER_BYTES;
	uint32_t len;

	if (r->type == WAL_ENTRY) {
		len = (uint32_t)(ENTRY_FIXED + r->len);
		p[0] = WAL_ENTRY;
		qfs_le64_put(p + 1, r->index);
		qfs_le64_put(p + 9, r->term);
		if (r->len)
			memcpy(p + ENTRY_FIXED, r->data, r->len);
	} else if (r->type == WAL_SNAPSHOT) {
		len = SNAPSHOT_BYTES;
		p[0] = WAL_SNAPSHOT;
		qfs_le64_put(p + 1, r->index);
		qfs_le64_put(p + 9, r->term);
	} else {
		len = HARDSTATE_BYTES;
		p[0] = WAL_HARDSTATE;
		qfs_le64_put(p + 1, r->hs_term);
		qfs_le64_put(p + 9, r->hs_vote);
		qfs_le64_put(p + 17, r->hs_commit);
	}
	qfs_le32_put(out, len);
	qfs_le32_put(out + 4, (uint32_t)crc32(0, out, 4));
	qfs_le32_put(out + 8, (uint32_t)crc32(0, p, len));
	return out + HEADER_BYTES + len;
}

int wal_write(struct wal *w, const struct wal_record *recs, size_t n)
{
	struct wal_record hs = {.type = WAL_HARDSTATE};
	uint64_t first_entry = 0, name;
	size_t total = 0;
	uint8_t *buf, *p;
	int rotate, rc;

	if (w->failed)
		return QFS_EIO;
	for (size_t i = 0; i < n; i++) {
		const struct wal_record *r = &recs[i];

		if (r->type == WAL_ENTRY) {
			if (r->index == 0 || r->len > WAL_RECORD_MAX - ENTRY_FIXED ||
			    (r->len && !r->data))
				return QFS_EINVAL;
			if (!first_entry)
				first_entry = r->index;
		} else if (r->type != WAL_HARDSTATE && r->type != WAL_SNAPSHOT) {
			return QFS_EINVAL;
		}
		if (record_size(r) > SIZE_MAX - total)
			return QFS_EINVAL;
		total += record_size(r);
	}
	if (n == 0)
		return 0;

	rotate = w->seg_bytes > w->seg_limit;
	if (rotate && w->have_hs) {
		hs.hs_term = w->hs_term;
		hs.hs_vote = w->hs_vote;
		hs.hs_commit = w->hs_commit;
		total += record_size(&hs);
	}
	buf = malloc(total);
	if (!buf)
		return QFS_ENOMEM;
	p = buf;
	if (rotate && w->have_hs)
		p = record_encode(p, &hs);
	for (size_t i = 0; i < n; i++)
		p = record_encode(p, &recs[i]);

	if (rotate) {
		/* Names must grow with creation order, which is replay order,
		 * even when the first entry replaces an older suffix. */
		name = first_entry ? first_entry : w->last_index + 1;
		if (name <= w->segs[w->nsegs - 1].name)
			name = w->segs[w->nsegs - 1].name + 1;
		rc = segment_create(w, name);
		if (rc)
			goto failed;
	}
	if (fileio_write_all(w->fd, buf, total) != 0) {
		LOG_ERROR("wal: %s: write: %s", w->dir, strerror(errno));
		rc = QFS_EIO;
		goto failed;
	}
	if (fdatasync(w->fd) != 0) {
		/* After a failed fdatasync the page cache may have dropped the
		 * dirty pages: nothing about this segment can be trusted. */
		LOG_ERROR("wal: %s: fdatasync: %s", w->dir, strerror(errno));
		rc = QFS_EIO;
		goto failed;
	}
	free(buf);

	w->seg_bytes += total;
	for (size_t i = 0; i < n; i++) {
		const struct wal_record *r = &recs[i];
		struct segment *seg = &w->segs[w->nsegs - 1];

		if (r->type == WAL_ENTRY || r->type == WAL_SNAPSHOT) {
			w->last_index = r->index;
			if (r->index > seg->max_index)
				seg->max_index = r->index;
		} else {
			w->have_hs = 1;
			w->hs_term = r->hs_term;
			w->hs_vote = r->hs_vote;
			w->hs_commit = r->hs_commit;
		}
	}
	return 0;

failed:
	free(buf);
	w->failed = 1;
	return QFS_EIO;
}

int wal_compact(struct wal *w, uint64_t index)
{
	size_t k = 0;
	int rc = 0;

	/* Only a prefix goes, oldest first: a crash part way leaves a WAL
	 * with no hole in it. */
	while (k + 1 < w->nsegs && w->segs[k].max_index <= index) {
		char *path = segment_path(w->dir, w->segs[k].name);

		if (!path) {
			rc = QFS_ENOMEM;
			break;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			LOG_ERROR("wal: %s: unlink: %s", path, strerror(errno));
			free(path);
			rc = QFS_EIO;
			break;
		}
		free(path);
		k++;
	}
	if (k == 0)
		return rc;
	memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
	w->nsegs -= k;
	if (fileio_fsync_dir(w->dir) != 0) {
		LOG_ERROR("wal: %s: fsync: %s", w->dir, strerror(errno));
		rc = QFS_EIO;
	}
	return rc;
}

uint64_t wal_last_index(const struct wal *w)
{
	return w->last_index;
}

void wal_set_segment_bytes(struct wal *w, uint64_t bytes)
{
	w->seg_limit = bytes;
}
