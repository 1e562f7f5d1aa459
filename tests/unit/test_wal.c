/*
 * WAL unit tests: round trips, replay rules, rotation, compaction, and
 * recovery from torn tails versus refusal on real corruption. Each test
 * works in its own mkdtemp() directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../common/log.h"
#include "../../store/wal.h"
#include "dir_fixture.h"

struct got {
	int type;
	uint64_t index, term;
	uint64_t hs_term, hs_vote, hs_commit;
	uint8_t *data;
	size_t len;
};

struct collector {
	struct got *v;
	size_t n, cap;
	size_t stop_at; /* return stop_rc on this record (1-based); 0 = never */
	int stop_rc;
};

static int collect(void *arg, const struct wal_record *rec)
{
	struct collector *c = arg;
	struct got *g;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		assert_non_null(c->v);
	}
	g = &c->v[c->n++];
	memset(g, 0, sizeof(*g));
	g->type = rec->type;
	if (rec->type == WAL_SNAPSHOT) {
		g->index = rec->index;
		g->term = rec->term;
	} else if (rec->type == WAL_ENTRY) {
		g->index = rec->index;
		g->term = rec->term;
		g->len = rec->len;
		g->data = malloc(rec->len ? rec->len : 1);
		assert_non_null(g->data);
		if (rec->len)
			memcpy(g->data, rec->data, rec->len);
	} else {
		g->hs_term = rec->hs_term;
		g->hs_vote = rec->hs_vote;
		g->hs_commit = rec->hs_commit;
	}
	if (c->stop_at && c->n == c->stop_at)
		return c->stop_rc;
	return 0;
}

static void collector_reset(struct collector *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].data);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static uint8_t pattern(uint64_t index, size_t i)
{
	return (uint8_t)(index * 31 + i * 7 + 1);
}

/* Entry data is a pattern of (index, len) so replay can be checked. */
static void check_entry(const struct got *g, uint64_t index, uint64_t term, size_t len)
{
	assert_int_equal(g->type, WAL_ENTRY);
	assert_int_equal(g->index, index);
	assert_int_equal(g->term, term);
	assert_int_equal(g->len, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(g->data[i], pattern(index, i));
}

static void put_entry(struct wal *w, uint64_t index, uint64_t term, size_t len)
{
	uint8_t *data = malloc(len ? len : 1);
	struct wal_record r = {.type = WAL_ENTRY, .index = index, .term = term, .len = len};

	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = pattern(index, i);
	r.data = data;
	assert_int_equal(wal_write(w, &r, 1), 0);
	free(data);
}

static void put_hs(struct wal *w, uint64_t term, uint64_t vote, uint64_t commit)
{
	struct wal_record r = {
	    .type = WAL_HARDSTATE, .hs_term = term, .hs_vote = vote, .hs_commit = commit};

	assert_int_equal(wal_write(w, &r, 1), 0);
}

static char *seg_path(const char *dir, uint64_t name)
{
	static char buf[4][512];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, 512, "%s/wal/%016" PRIx64 ".wal", dir, name);
	return p;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void flip_byte(const char *path, uint64_t off)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);

	assert_true(off < len);
	buf[off] ^= 0x5a;
	spit(path, buf, len);
	free(buf);
}

/* Segment names in DIR/wal, sorted. Returns how many (at most max). */
static size_t list_segs(const char *dir, uint64_t *names, size_t max)
{
	char path[512];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/wal", dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != 20 || strcmp(de->d_name + 16, ".wal") != 0)
			continue;
		assert_true(n < max);
		names[n++] = strtoull(de->d_name, NULL, 16);
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && names[j - 1] > names[j]; j--) {
			uint64_t t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	return n;
}

/* A record with correct CRCs around an arbitrary payload. */
static size_t raw_record(uint8_t *out, const uint8_t *payload, uint32_t len)
{
	qfs_le32_put(out, len);
	qfs_le32_put(out + 4, (uint32_t)crc32(0, out, 4));
	qfs_le32_put(out + 8, (uint32_t)crc32(0, payload, len));
	memcpy(out + 12, payload, len);
	return 12 + len;
}

/* Offset and index of the first entry in a segment file. */
static uint64_t first_entry(const char *path, uint64_t *index)
{
	size_t len, off = 0;
	uint8_t *buf = slurp(path, &len);

	while (off + 12 < len && buf[off + 12] != WAL_ENTRY)
		off += 12 + qfs_le32_get(buf + off);
	assert_true(off + 12 + 17 <= len);
	*index = qfs_le64_get(buf + off + 13);
	free(buf);
	return off;
}

static void append_bytes(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static int reopen(const char *dir, uint64_t after, struct collector *c, struct wal **w, char *err,
		  size_t errlen)
{
	collector_reset(c);
	return wal_open(dir, after, collect, c, w, err, errlen);
}

static void test_round_trip(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	struct wal_record batch[5];
	uint8_t data[5][10];
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(wal_last_index(w), 0);
	assert_true(access(seg_path(dir, 1), F_OK) == 0);

	for (int i = 0; i < 5; i++) {
		for (size_t j = 0; j < 10; j++)
			data[i][j] = pattern((uint64_t)i + 1, j);
		batch[i] = (struct wal_record){.type = WAL_ENTRY,
					       .index = (uint64_t)i + 1,
					       .term = 1,
					       .data = data[i],
					       .len = 10};
	}
	assert_int_equal(wal_write(w, batch, 5), 0);
	put_hs(w, 1, 3, 4);
	put_entry(w, 6, 2, 0);
	put_entry(w, 7, 2, 1000);
	assert_int_equal(wal_last_index(w), 7);
	wal_close(w);

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(wal_last_index(w), 7);
	assert_int_equal(c.n, 8);
	for (int i = 0; i < 5; i++)
		check_entry(&c.v[i], (uint64_t)i + 1, 1, 10);
	assert_int_equal(c.v[5].type, WAL_HARDSTATE);
	assert_int_equal(c.v[5].hs_term, 1);
	assert_int_equal(c.v[5].hs_vote, 3);
	assert_int_equal(c.v[5].hs_commit, 4);
	check_entry(&c.v[6], 6, 2, 0);
	check_entry(&c.v[7], 7, 2, 1000);

	/* Appends after reopening continue the same segment. */
	put_entry(w, 8, 2, 5);
	wal_close(w);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 9);
	check_entry(&c.v[8], 8, 2, 5);
	{
		uint64_t names[4];

		assert_int_equal(list_segs(dir, names, 4), 1);
	}
	wal_close(w);
	collector_reset(&c);
}

static void test_after_index_skips(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (uint64_t i = 1; i <= 10; i++) {
		put_entry(w, i, 1, 3);
		if (i == 4)
			put_hs(w, 1, 2, 3);
	}
	wal_close(w);

	assert_int_equal(reopen(dir, 6, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 5);
	assert_int_equal(c.v[0].type, WAL_HARDSTATE); /* hard states are never skipped */
	for (uint64_t i = 7; i <= 10; i++)
		check_entry(&c.v[i - 6], i, 1, 3);
	assert_int_equal(wal_last_index(w), 10);
	wal_close(w);

	/* A snapshot beyond every entry: nothing but the hard state. */
	assert_int_equal(reopen(dir, 50, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.v[0].type, WAL_HARDSTATE);
	/* After installing that snapshot the log continues at 51. */
	put_entry(w, 51, 3, 2);
	wal_close(w);
	assert_int_equal(reopen(dir, 50, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 2);
	check_entry(&c.v[1], 51, 3, 2);
	wal_close(w);
	collector_reset(&c);
}

static void test_suffix_replacement(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (uint64_t i = 1; i <= 5; i++)
		put_entry(w, i, 1, 4);
	put_entry(w, 3, 2, 8);
	put_entry(w, 4, 2, 8);
	assert_int_equal(wal_last_index(w), 4);
	put_entry(w, 5, 2, 8);
	put_entry(w, 6, 2, 8);
	wal_close(w);

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 9);
	for (uint64_t i = 1; i <= 5; i++)
		check_entry(&c.v[i - 1], i, 1, 4);
	check_entry(&c.v[5], 3, 2, 8);
	check_entry(&c.v[6], 4, 2, 8);
	check_entry(&c.v[7], 5, 2, 8);
	check_entry(&c.v[8], 6, 2, 8);
	assert_int_equal(wal_last_index(w), 6);
	wal_close(w);

	/* With a snapshot at 4: 5(t1), then the replacements 3 and 4 are
	 * covered by the snapshot, then 5(t2) and 6(t2). */
	assert_int_equal(reopen(dir, 4, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 3);
	check_entry(&c.v[0], 5, 1, 4);
	check_entry(&c.v[1], 5, 2, 8);
	check_entry(&c.v[2], 6, 2, 8);
	wal_close(w);
	collector_reset(&c);
}

/* A snapshot marker supersedes the log before it: the next entry follows
 * the snapshot, whether the old log was shorter (no gap error) or longer. */
static void test_snapshot_marker(void **state)
{
	const char *dir = *state;
	struct wal_record snap = {.type = WAL_SNAPSHOT, .index = 10, .term = 3};
	struct collector c = {0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (uint64_t i = 1; i <= 5; i++)
		put_entry(w, i, 1, 4);
	assert_int_equal(wal_write(w, &snap, 1), 0);
	assert_int_equal(wal_last_index(w), 10);
	put_entry(w, 11, 3, 4);
	put_entry(w, 12, 3, 4);
	snap.index = 11; /* a longer, conflicting log dropped the same way */
	snap.term = 4;
	assert_int_equal(wal_write(w, &snap, 1), 0);
	put_entry(w, 12, 4, 8);
	wal_close(w);

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 10);
	check_entry(&c.v[4], 5, 1, 4);
	assert_int_equal(c.v[5].type, WAL_SNAPSHOT);
	assert_int_equal(c.v[5].index, 10);
	assert_int_equal(c.v[5].term, 3);
	check_entry(&c.v[6], 11, 3, 4);
	check_entry(&c.v[7], 12, 3, 4);
	assert_int_equal(c.v[8].type, WAL_SNAPSHOT);
	check_entry(&c.v[9], 12, 4, 8);
	wal_close(w);

	/* A gap after the marker is still refused. */
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	put_entry(w, 14, 4, 4);
	wal_close(w);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), QFS_ECORRUPT);
	assert_non_null(strstr(err, "entries missing"));
	collector_reset(&c);
}

/* Writes hs + entries 1..n (one write each) with a tiny segment limit. */
static void fill_segments(const char *dir, uint64_t n, uint64_t limit)
{
	struct collector c = {0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	wal_set_segment_bytes(w, limit);
	put_hs(w, 1, 1, 0);
	for (uint64_t i = 1; i <= n; i++) {
		put_entry(w, i, 1, 50);
		if (i == 10)
			put_hs(w, 2, 7, 9);
	}
	wal_close(w);
	collector_reset(&c);
}

static void test_rotation(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	uint64_t names[64];
	size_t nseg, nhs = 0, k = 0;
	struct wal *w;
	char err[256];

	fill_segments(dir, 30, 200);
	nseg = list_segs(dir, names, 64);
	assert_true(nseg >= 5);
	assert_int_equal(names[0], 1);
	for (size_t i = 1; i < nseg; i++) {
		size_t len;
		uint8_t *buf = slurp(seg_path(dir, names[i]), &len);
		uint64_t index;

		/* Starts with the current hard state; named after its first
		 * entry. */
		assert_true(len > 12 + 25);
		assert_int_equal(buf[12], WAL_HARDSTATE);
		if (names[i] != 11) /* 11 may start with the HS write itself */
			assert_int_equal(qfs_le64_get(buf + 13), names[i] > 11 ? 2 : 1);
		free(buf);
		first_entry(seg_path(dir, names[i]), &index);
		assert_int_equal(index, names[i]);
	}

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (size_t i = 0; i < c.n; i++) {
		if (c.v[i].type == WAL_HARDSTATE) {
			nhs++;
			continue;
		}
		check_entry(&c.v[i], ++k, 1, 50);
	}
	assert_int_equal(k, 30);
	assert_int_equal(nhs, 2 + (nseg - 1));
	assert_int_equal(c.v[c.n - 1].type, WAL_ENTRY);
	assert_int_equal(wal_last_index(w), 30);

	/* A replacement right after rotation still gets a later name. */
	wal_set_segment_bytes(w, 0);
	put_entry(w, 29, 3, 50);
	wal_close(w);
	assert_int_equal(list_segs(dir, names, 64), nseg + 1);
	assert_true(names[nseg] > names[nseg - 1]);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	check_entry(&c.v[c.n - 1], 29, 3, 50);
	assert_int_equal(wal_last_index(w), 29);
	wal_close(w);
	collector_reset(&c);
}

/* Four entries in one segment; sizes[i] is the file size after entry i+1. */
static void four_entries(const char *dir, uint64_t sizes[4])
{
	struct collector c = {0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (uint64_t i = 1; i <= 4; i++) {
		put_entry(w, i, 1, 20 + i * 5);
		sizes[i - 1] = file_size(seg_path(dir, 1));
	}
	wal_close(w);
	collector_reset(&c);
}

static void test_torn_tail_every_cut(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct collector c = {0};
	uint64_t sizes[4];
	uint8_t *orig;
	size_t len;
	struct wal *w;
	char err[256];

	four_entries(dir, sizes);
	orig = slurp(path, &len);
	assert_int_equal(len, sizes[3]);
	for (uint64_t cut = sizes[2]; cut < sizes[3]; cut++) {
		spit(path, orig, cut);
		assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
		assert_int_equal(c.n, 3);
		for (uint64_t i = 1; i <= 3; i++)
			check_entry(&c.v[i - 1], i, 1, 20 + i * 5);
		assert_int_equal(wal_last_index(w), 3);
		assert_int_equal(file_size(path), sizes[2]);
		/* Appending continues right after the last good record. */
		put_entry(w, 4, 2, 3);
		wal_close(w);
		assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
		assert_int_equal(c.n, 4);
		check_entry(&c.v[3], 4, 2, 3);
		wal_close(w);
	}
	free(orig);
	collector_reset(&c);
}

static void test_torn_tail_zeros(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct collector c = {0};
	uint8_t zeros[5000] = {0};
	uint64_t sizes[4];
	uint8_t *orig;
	size_t len;
	struct wal *w;
	char err[256];

	four_entries(dir, sizes);
	orig = slurp(path, &len);

	/* Zeros after the last record (a file extended but never written). */
	append_bytes(path, zeros, sizeof(zeros));
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(file_size(path), sizes[3]);
	wal_close(w);

	/* The last record itself zeroed, and more zeros after it. */
	memset(orig + sizes[2], 0, sizes[3] - sizes[2]);
	spit(path, orig, len);
	append_bytes(path, zeros, 7);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(file_size(path), sizes[2]);
	wal_close(w);
	free(orig);
	collector_reset(&c);
}

/* Expects QFS_ECORRUPT naming path and offset, with cb never called. */
static void expect_corrupt(const char *dir, uint64_t after, const char *path, uint64_t off,
			   const char *what)
{
	struct collector c = {0};
	struct wal *w = (struct wal *)&c;
	char err[512], at[64];

	assert_int_equal(wal_open(dir, after, collect, &c, &w, err, sizeof(err)), QFS_ECORRUPT);
	assert_null(w);
	assert_int_equal(c.n, 0);
	if (!strstr(err, path) || !strstr(err, what))
		fail_msg("errmsg \"%s\" lacks \"%s\" or \"%s\"", err, path, what);
	if (off != UINT64_MAX) {
		snprintf(at, sizeof(at), "at offset %" PRIu64 " ", off);
		if (!strstr(err, at))
			fail_msg("errmsg \"%s\" lacks \"%s\"", err, at);
	}
	collector_reset(&c);
}

static void test_corrupt_middle_payload(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	uint64_t sizes[4];

	four_entries(dir, sizes);
	flip_byte(path, sizes[1] + 12 + 20); /* inside entry 3's data */
	expect_corrupt(dir, 0, path, sizes[1], "bad record CRC");
	assert_int_equal(file_size(path), sizes[3]); /* nothing truncated */
	/* Still refused on the next try: nothing was "repaired". */
	expect_corrupt(dir, 0, path, sizes[1], "bad record CRC");
}

static void test_corrupt_middle_length(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	uint64_t sizes[4];

	four_entries(dir, sizes);
	flip_byte(path, sizes[1] + 1); /* entry 3's length field */
	expect_corrupt(dir, 0, path, sizes[1], "header CRC");
	assert_int_equal(file_size(path), sizes[3]);
}

static void test_corrupt_last_record_payload(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	uint64_t sizes[4];

	/* A complete last record with a bad CRC is not a torn write: it was
	 * fully written, then damaged, and may have been acknowledged. */
	four_entries(dir, sizes);
	flip_byte(path, sizes[3] - 1);
	expect_corrupt(dir, 0, path, sizes[2], "bad record CRC");
}

static void test_garbage_after_bad_header(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct collector c = {0};
	uint8_t junk[40] = {0};
	uint64_t sizes[4];
	uint8_t *orig;
	size_t len;
	struct wal *w;
	char err[256];

	/* A bad header with one non-zero byte later on is not torn. */
	four_entries(dir, sizes);
	orig = slurp(path, &len);
	junk[30] = 1;
	append_bytes(path, junk, sizeof(junk));
	expect_corrupt(dir, 0, path, sizes[3], "bad record header CRC");

	/* Fewer bytes than a header, whatever they are, are a cut. */
	spit(path, orig, len);
	append_bytes(path, (const uint8_t *)"\x11\x22\x33", 3);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(file_size(path), sizes[3]);
	wal_close(w);
	free(orig);
	collector_reset(&c);
}

static void test_length_over_max(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	uint8_t hdr[12 + 100] = {0};
	uint64_t sizes[4];

	four_entries(dir, sizes);
	qfs_le32_put(hdr, WAL_RECORD_MAX + 1);
	qfs_le32_put(hdr + 4, (uint32_t)crc32(0, hdr, 4));
	memset(hdr + 12, 0xab, 100);
	append_bytes(path, hdr, sizeof(hdr));
	expect_corrupt(dir, 0, path, sizes[3], "over WAL_RECORD_MAX");
}

static void test_bad_structure(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	uint8_t payload[30] = {0}, rec[64];
	uint64_t sizes[4];
	size_t n;

	four_entries(dir, sizes);
	payload[0] = 9; /* unknown type, CRCs fine */
	n = raw_record(rec, payload, 20);
	append_bytes(path, rec, n);
	expect_corrupt(dir, 0, path, sizes[3], "unknown record type");

	spit(path, (uint8_t[]){0}, 0);
	four_entries(dir, sizes);
	payload[0] = WAL_HARDSTATE; /* wrong size */
	n = raw_record(rec, payload, 24);
	append_bytes(path, rec, n);
	expect_corrupt(dir, 0, path, sizes[3], "HARDSTATE record of wrong size");

	spit(path, (uint8_t[]){0}, 0);
	four_entries(dir, sizes);
	payload[0] = WAL_ENTRY; /* shorter than index + term */
	n = raw_record(rec, payload, 16);
	append_bytes(path, rec, n);
	expect_corrupt(dir, 0, path, sizes[3], "ENTRY record too short");

	spit(path, (uint8_t[]){0}, 0);
	four_entries(dir, sizes);
	n = raw_record(rec, payload, 0); /* empty payload */
	append_bytes(path, rec, n);
	expect_corrupt(dir, 0, path, sizes[3], "unknown record type");
}

static void test_corrupt_nonlast_segment(void **state)
{
	const char *dir = *state;
	uint64_t names[64];
	uint8_t zeros[64] = {0};
	uint8_t *orig;
	size_t nseg, len;
	const char *first;

	fill_segments(dir, 30, 200);
	nseg = list_segs(dir, names, 64);
	assert_true(nseg >= 3);
	first = seg_path(dir, names[0]);
	orig = slurp(first, &len);

	/* A cut that would be a torn tail in the last segment. */
	spit(first, orig, len - 3);
	expect_corrupt(dir, 0, first, UINT64_MAX, "cut short by end of file");

	/* Zeros after the last record: torn only in the last segment. */
	spit(first, orig, len);
	append_bytes(first, zeros, sizeof(zeros));
	expect_corrupt(dir, 0, first, len, "bad record header CRC");

	/* A payload flip in a middle segment names that segment. */
	spit(first, orig, len);
	flip_byte(seg_path(dir, names[1]), 12 + 25 + 12 + 20);
	expect_corrupt(dir, 0, seg_path(dir, names[1]), 12 + 25, "bad record CRC");
	free(orig);
}

static void test_compact(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	uint64_t names[64], after[64];
	size_t nseg, nafter, k = 0;
	uint64_t compact_at;
	struct wal *w;
	char err[256];

	fill_segments(dir, 30, 200);
	nseg = list_segs(dir, names, 64);
	assert_true(nseg >= 5);
	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);

	/* Segment i holds entries names[i] .. names[i+1]-1. Compacting at
	 * the last entry of segment 2 deletes segments 0..2 exactly. */
	compact_at = names[3] - 1;
	assert_int_equal(wal_compact(w, compact_at), 0);
	nafter = list_segs(dir, after, 64);
	assert_int_equal(nafter, nseg - 3);
	for (size_t i = 0; i < nafter; i++)
		assert_int_equal(after[i], names[i + 3]);

	/* One short of a whole segment deletes nothing more. */
	assert_int_equal(wal_compact(w, names[4] - 2), 0);
	assert_int_equal(list_segs(dir, after, 64), nafter);

	/* Compacting past everything keeps the last segment. */
	assert_int_equal(wal_compact(w, 1000), 0);
	assert_int_equal(list_segs(dir, after, 64), 1);
	assert_int_equal(after[0], names[nseg - 1]);
	put_entry(w, 31, 1, 50);
	wal_close(w);

	/* Reopening at the snapshot: the hard state survived compaction. */
	assert_int_equal(reopen(dir, names[nseg - 1] - 1, &c, &w, err, sizeof(err)), 0);
	assert_int_equal(c.v[0].type, WAL_HARDSTATE);
	assert_int_equal(c.v[0].hs_term, 2);
	assert_int_equal(c.v[0].hs_vote, 7);
	assert_int_equal(c.v[0].hs_commit, 9);
	for (size_t i = 1; i < c.n; i++)
		check_entry(&c.v[i], names[nseg - 1] + k++, 1, 50);
	assert_int_equal(names[nseg - 1] + k - 1, 31);
	wal_close(w);
	collector_reset(&c);

	/* Without the snapshot the WAL does not reach back far enough. */
	{
		uint64_t index, off = first_entry(seg_path(dir, names[nseg - 1]), &index);

		expect_corrupt(dir, 0, seg_path(dir, names[nseg - 1]), off, "snapshot ends at 0");
	}
}

static void test_missing_segment(void **state)
{
	const char *dir = *state;
	uint64_t names[64];
	uint64_t index, off;
	size_t nseg;

	fill_segments(dir, 30, 200);
	nseg = list_segs(dir, names, 64);
	assert_true(nseg >= 4);
	assert_int_equal(unlink(seg_path(dir, names[2])), 0);
	off = first_entry(seg_path(dir, names[3]), &index);
	expect_corrupt(dir, 0, seg_path(dir, names[3]), off, "entries missing");

	/* The first segment missing is caught against after_index. */
	assert_int_equal(unlink(seg_path(dir, names[0])), 0);
	off = first_entry(seg_path(dir, names[1]), &index);
	expect_corrupt(dir, 0, seg_path(dir, names[1]), off, "first entry");
}

static void test_cb_stop_and_bad_write(void **state)
{
	const char *dir = *state;
	struct collector c = {0};
	struct wal_record bad = {.type = WAL_ENTRY, .index = 0};
	struct wal *w;
	char err[256];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	for (uint64_t i = 1; i <= 5; i++)
		put_entry(w, i, 1, 1);
	assert_int_equal(wal_write(w, &bad, 1), QFS_EINVAL);
	bad.type = 77;
	assert_int_equal(wal_write(w, &bad, 1), QFS_EINVAL);
	bad.type = WAL_ENTRY;
	bad.index = 6;
	bad.len = WAL_RECORD_MAX;
	bad.data = (const uint8_t *)&bad;
	assert_int_equal(wal_write(w, &bad, 1), QFS_EINVAL);
	put_entry(w, 6, 1, 1); /* a rejected record does not fail the WAL */
	wal_close(w);

	collector_reset(&c);
	c.stop_at = 3;
	c.stop_rc = 42;
	w = (struct wal *)&c;
	assert_int_equal(wal_open(dir, 0, collect, &c, &w, err, sizeof(err)), 42);
	assert_null(w);
	assert_int_equal(c.n, 3);

	/* No callback: verification only. */
	assert_int_equal(wal_open(dir, 0, NULL, NULL, &w, NULL, 0), 0);
	assert_int_equal(wal_last_index(w), 6);
	wal_close(w);
	collector_reset(&c);
}

/* ---- wal_inspect ---------------------------------------------------------- */

struct seen {
	struct collector c;
	uint64_t offsets[64], bytes[64];
	int covered[64];
	char path[64][512];
	size_t nsegs;
	uint64_t seg_records, seg_torn_at;
};

static int seen_record(void *arg, const struct wal_record *rec, const struct wal_pos *pos)
{
	struct seen *s = arg;
	size_t i = s->c.n;

	assert_true(i < 64);
	s->offsets[i] = pos->offset;
	s->bytes[i] = pos->bytes;
	s->covered[i] = pos->covered;
	snprintf(s->path[i], sizeof(s->path[i]), "%s", pos->path);
	return collect(&s->c, rec);
}

static int seen_segment(void *arg, const struct wal_segment_info *seg)
{
	struct seen *s = arg;

	s->nsegs++;
	s->seg_records += seg->records;
	s->seg_torn_at = seg->torn_at;
	return 0;
}

static void test_inspect_places_and_summary(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct seen s = {0};
	struct wal_inspect_cb cb = {seen_record, seen_segment, &s};
	struct wal_summary sum;
	uint64_t sizes[4];
	size_t len, len2;
	uint8_t *before, *after;
	char err[256];

	four_entries(dir, sizes);
	before = slurp(path, &len);
	/* Entries 1 and 2 are under a snapshot at 2: covered, still shown. */
	assert_int_equal(wal_inspect(dir, 2, &cb, &sum, err, sizeof(err)), 0);
	assert_int_equal(s.c.n, 4);
	for (size_t i = 0; i < 4; i++) {
		check_entry(&s.c.v[i], i + 1, 1, 20 + (i + 1) * 5);
		assert_int_equal(s.offsets[i], i ? sizes[i - 1] : 0);
		assert_int_equal(s.bytes[i], sizes[i] - (i ? sizes[i - 1] : 0));
		assert_int_equal(s.covered[i], i < 2);
		assert_string_equal(s.path[i], path);
	}
	assert_int_equal(s.nsegs, 1);
	assert_int_equal(s.seg_records, 4);
	assert_int_equal(s.seg_torn_at, UINT64_MAX);
	assert_int_equal(sum.segments, 1);
	assert_int_equal(sum.records, 4);
	assert_int_equal(sum.entries, 4);
	assert_int_equal(sum.first_index, 1);
	assert_int_equal(sum.last_index, 4);
	assert_int_equal(sum.last_term, 1);
	assert_false(sum.have_hs);
	assert_false(sum.torn);

	/* Reading changed nothing. */
	after = slurp(path, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(before, after, len);
	free(before);
	free(after);
	collector_reset(&s.c);
}

static void test_inspect_rotation_and_hardstate(void **state)
{
	const char *dir = *state;
	struct seen s = {0};
	struct wal_inspect_cb cb = {seen_record, seen_segment, &s};
	struct wal_summary sum;
	uint64_t names[64];
	char err[256];

	fill_segments(dir, 30, 200);
	assert_int_equal(wal_inspect(dir, 0, &cb, &sum, err, sizeof(err)), 0);
	assert_int_equal(s.nsegs, list_segs(dir, names, 64));
	assert_int_equal(sum.segments, s.nsegs);
	assert_int_equal(s.seg_records, sum.records);
	assert_int_equal(sum.entries, 30);
	assert_int_equal(sum.first_index, 1);
	assert_int_equal(sum.last_index, 30);
	assert_true(sum.have_hs);
	assert_int_equal(sum.hs_term, 2);
	assert_int_equal(sum.hs_vote, 7);
	assert_int_equal(sum.hs_commit, 9);
	collector_reset(&s.c);
}

static void test_inspect_torn_tail_reported_not_repaired(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct seen s = {0};
	struct wal_inspect_cb cb = {seen_record, seen_segment, &s};
	struct wal_summary sum;
	uint64_t sizes[4];
	size_t len;
	uint8_t *orig;
	char err[256];

	four_entries(dir, sizes);
	orig = slurp(path, &len);
	spit(path, orig, sizes[3] - 3);
	assert_int_equal(wal_inspect(dir, 0, &cb, &sum, err, sizeof(err)), 0);
	assert_int_equal(s.c.n, 3);
	assert_true(sum.torn);
	assert_int_equal(sum.torn_offset, sizes[2]);
	assert_int_equal(sum.torn_bytes, sizes[3] - 3 - sizes[2]);
	assert_string_equal(sum.torn_file, "0000000000000001.wal");
	assert_non_null(strstr(sum.torn_why, "cut short"));
	assert_int_equal(s.seg_torn_at, sizes[2]);
	assert_int_equal(sum.last_index, 3);
	/* Reported, not truncated. */
	assert_int_equal(file_size(path), sizes[3] - 3);
	free(orig);
	collector_reset(&s.c);
}

static void test_inspect_corrupt_middle(void **state)
{
	const char *dir = *state;
	const char *path = seg_path(dir, 1);
	struct seen s = {0};
	struct wal_inspect_cb cb = {seen_record, NULL, &s};
	struct wal_summary sum;
	uint64_t sizes[4];
	char err[512], at[64];

	four_entries(dir, sizes);
	flip_byte(path, sizes[1] + 12 + 20);
	assert_int_equal(wal_inspect(dir, 0, &cb, &sum, err, sizeof(err)), QFS_ECORRUPT);
	/* The records before the damage were seen; the message names the
	 * file and the offset, and says nothing about starting. */
	assert_int_equal(s.c.n, 2);
	assert_non_null(strstr(err, path));
	snprintf(at, sizeof(at), "bad record CRC at offset %" PRIu64 " ", sizes[1]);
	if (!strstr(err, at))
		fail_msg("errmsg \"%s\" lacks \"%s\"", err, at);
	assert_null(strstr(err, "refusing"));
	assert_int_equal(file_size(path), sizes[3]);
	collector_reset(&s.c);
}

static void test_inspect_gap(void **state)
{
	const char *dir = *state;
	struct seen s = {0};
	struct wal_inspect_cb cb = {seen_record, NULL, &s};
	struct collector c = {0};
	struct wal *w;
	char err[512];

	assert_int_equal(reopen(dir, 0, &c, &w, err, sizeof(err)), 0);
	put_entry(w, 1, 1, 4);
	put_entry(w, 2, 1, 4);
	put_entry(w, 5, 1, 4);
	wal_close(w);
	assert_int_equal(wal_inspect(dir, 0, &cb, NULL, err, sizeof(err)), QFS_ECORRUPT);
	assert_int_equal(s.c.n, 2);
	assert_non_null(strstr(err, "entry index 5 at offset"));
	assert_non_null(strstr(err, "entries missing"));
	/* After a snapshot at 4 the same log is whole. */
	collector_reset(&s.c);
	assert_int_equal(wal_inspect(dir, 4, &cb, NULL, err, sizeof(err)), 0);
	assert_int_equal(s.c.n, 3);
	assert_true(s.covered[0] && s.covered[1] && !s.covered[2]);
	collector_reset(&s.c);
	collector_reset(&c);
}

static void test_inspect_missing_dir_and_stop(void **state)
{
	const char *dir = *state;
	struct collector c = {.stop_at = 2, .stop_rc = 42};
	struct wal_inspect_cb cb = {NULL, NULL, NULL};
	struct wal_summary sum;
	uint64_t sizes[4];
	char err[256], path[512];

	assert_int_equal(wal_inspect(dir, 0, &cb, &sum, err, sizeof(err)), QFS_ENOENT);
	assert_non_null(strstr(err, "/wal"));
	snprintf(path, sizeof(path), "%s/wal", dir);
	assert_int_equal(access(path, F_OK), -1); /* not created */

	four_entries(dir, sizes);
	{
		struct seen s = {.c = c};
		struct wal_inspect_cb stop = {seen_record, NULL, &s};

		assert_int_equal(wal_inspect(dir, 0, &stop, &sum, err, sizeof(err)), 42);
		assert_int_equal(s.c.n, 2);
		collector_reset(&s.c);
	}
}

int main(void)
{
	/* Torn-tail warnings are expected by the hundred here. */
	qfs_log_set_level("error");
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_round_trip),
	    T(test_after_index_skips),
	    T(test_suffix_replacement),
	    T(test_snapshot_marker),
	    T(test_rotation),
	    T(test_torn_tail_every_cut),
	    T(test_torn_tail_zeros),
	    T(test_corrupt_middle_payload),
	    T(test_corrupt_middle_length),
	    T(test_corrupt_last_record_payload),
	    T(test_garbage_after_bad_header),
	    T(test_length_over_max),
	    T(test_bad_structure),
	    T(test_corrupt_nonlast_segment),
	    T(test_compact),
	    T(test_missing_segment),
	    T(test_cb_stop_and_bad_write),
	    T(test_inspect_places_and_summary),
	    T(test_inspect_rotation_and_hardstate),
	    T(test_inspect_torn_tail_reported_not_repaired),
	    T(test_inspect_corrupt_middle),
	    T(test_inspect_gap),
	    T(test_inspect_missing_dir_and_stop),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
