/*
 * Snapshot file unit tests: round trips, pruning, choice of the newest,
 * refusal (with the file named) for every kind of damage, and backup files
 * (any name, written piece by piece, read back or only verified).
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
#include "../../store/snapfile.h"
#include "dir_fixture.h"

/* A compressible but not trivial image of n bytes, varying with seed. */
static uint8_t *image(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = i % 97 == 0 ? (uint8_t)((i * seed) >> 3) : (uint8_t) "abcdefgh/key="[i % 13];
	return p;
}

static const char *snap_path(const char *dir, uint64_t index, uint64_t term)
{
	static char buf[4][512];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, 512, "%s/snap/%016" PRIx64 "-%016" PRIx64 ".snap", dir, index, term);
	return p;
}

static size_t count_files(const char *dir)
{
	char path[512];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/snap", dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void expect_load(const char *dir, uint64_t index, uint64_t term, const uint8_t *want,
			size_t want_len)
{
	uint64_t gi = 0, gt = 0;
	uint8_t *data = NULL;
	size_t len = 0;
	char err[256];

	assert_int_equal(snapfile_load(dir, &gi, &gt, &data, &len, err, sizeof(err)), 0);
	assert_int_equal(gi, index);
	assert_int_equal(gt, term);
	assert_int_equal(len, want_len);
	assert_non_null(data);
	if (want_len)
		assert_memory_equal(data, want, want_len);
	free(data);
}

static void expect_corrupt(const char *dir, const char *path, const char *what)
{
	uint64_t gi = 0, gt = 0;
	uint8_t *data = (uint8_t *)"x";
	size_t len = 0;
	char err[512];

	assert_int_equal(snapfile_load(dir, &gi, &gt, &data, &len, err, sizeof(err)), QFS_ECORRUPT);
	assert_null(data);
	if (!strstr(err, path) || !strstr(err, what))
		fail_msg("errmsg \"%s\" lacks \"%s\" or \"%s\"", err, path, what);
}

static void test_round_trip(void **state)
{
	const char *dir = *state;
	size_t n = 300000;
	uint8_t *img = image(n, 3);
	size_t flen;
	uint8_t *file;

	assert_int_equal(snapfile_write(dir, 10, 2, img, n, 2), 0);
	expect_load(dir, 10, 2, img, n);

	/* The format is as documented: header fields, then zlib. */
	file = slurp(snap_path(dir, 10, 2), &flen);
	assert_memory_equal(file, "QFSSNAP1", 8);
	assert_int_equal(qfs_le64_get(file + 8), 10);
	assert_int_equal(qfs_le64_get(file + 16), 2);
	assert_int_equal(qfs_le64_get(file + 24), n);
	assert_int_equal(qfs_le64_get(file + 32), flen - 48);
	assert_true(flen < n / 4); /* it did compress */
	free(file);
	free(img);

	/* An empty image is a valid snapshot. */
	assert_int_equal(snapfile_write(dir, 11, 2, NULL, 0, 2), 0);
	expect_load(dir, 11, 2, NULL, 0);
}

static void test_none(void **state)
{
	const char *dir = *state;
	uint64_t gi, gt;
	uint8_t *data = (uint8_t *)"x";
	size_t len = 1;
	char path[512];

	assert_int_equal(snapfile_load(dir, &gi, &gt, &data, &len, NULL, 0), QFS_ENOENT);
	assert_null(data);
	snprintf(path, sizeof(path), "%s/snap", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	data = (uint8_t *)"x";
	assert_int_equal(snapfile_load(dir, &gi, &gt, &data, &len, NULL, 0), QFS_ENOENT);
	assert_null(data);
}

static void test_keep_and_newest(void **state)
{
	const char *dir = *state;
	uint8_t *a = image(5000, 1), *b = image(5000, 2), *c = image(5000, 3);

	assert_int_equal(snapfile_write(dir, 100, 1, a, 5000, 2), 0);
	assert_int_equal(snapfile_write(dir, 200, 1, b, 5000, 2), 0);
	assert_int_equal(snapfile_write(dir, 300, 2, c, 5000, 2), 0);
	assert_int_equal(count_files(dir), 2);
	assert_int_equal(access(snap_path(dir, 100, 1), F_OK), -1);
	assert_int_equal(access(snap_path(dir, 200, 1), F_OK), 0);
	assert_int_equal(access(snap_path(dir, 300, 2), F_OK), 0);
	expect_load(dir, 300, 2, c, 5000);

	/* Newest is by index, not by write order. */
	assert_int_equal(snapfile_write(dir, 250, 2, a, 5000, 5), 0);
	expect_load(dir, 300, 2, c, 5000);
	assert_int_equal(count_files(dir), 3);
	free(a);
	free(b);
	free(c);
}

static void test_tmp_leftovers(void **state)
{
	const char *dir = *state;
	uint8_t *a = image(100, 1);
	char tmp[512];

	assert_int_equal(snapfile_write(dir, 7, 1, a, 100, 2), 0);
	/* A crash before the rename leaves a tmp file, maybe half written. */
	snprintf(tmp, sizeof(tmp), "%s/snap/tmp-Ab12Cd", dir);
	spit(tmp, (const uint8_t *)"QFSSNAP1garbage", 15);
	expect_load(dir, 7, 1, a, 100);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(count_files(dir), 1);
	free(a);
}

static void test_too_big(void **state)
{
	uint8_t byte = 0;

	/* Refused before the data is read. */
	assert_int_equal(snapfile_write(*state, 1, 1, &byte, (size_t)(8ull << 30) + 1, 2),
			 QFS_EINVAL);
}

/* A fresh snapshot at (5, 1), the file's bytes in *buf. */
static const char *fresh(const char *dir, uint8_t **buf, size_t *len)
{
	uint8_t *img = image(20000, 9);
	const char *path = snap_path(dir, 5, 1);

	assert_int_equal(snapfile_write(dir, 5, 1, img, 20000, 2), 0);
	free(img);
	*buf = slurp(path, len);
	return path;
}

static void reseal_header(uint8_t *buf)
{
	qfs_le32_put(buf + 44, (uint32_t)crc32(0, buf, 40));
}

static void test_corrupt_magic_and_header(void **state)
{
	const char *dir = *state;
	uint8_t *buf;
	size_t len;
	const char *path = fresh(dir, &buf, &len);

	buf[0] ^= 1;
	spit(path, buf, len);
	expect_corrupt(dir, path, "bad magic");
	buf[0] ^= 1;

	for (size_t off = 8; off < 48; off += 4) {
		buf[off] ^= 0x10; /* any header field, or either CRC */
		spit(path, buf, len);
		expect_corrupt(dir, path, off == 40 ? "bad payload CRC" : "bad header CRC");
		buf[off] ^= 0x10;
	}
	spit(path, buf, len);
	{
		uint8_t *img = image(20000, 9);

		expect_load(dir, 5, 1, img, 20000); /* restored bytes load again */
		free(img);
	}
	free(buf);
}

static void test_corrupt_lengths(void **state)
{
	const char *dir = *state;
	uint8_t *buf;
	size_t len;
	const char *path = fresh(dir, &buf, &len);
	uint8_t *more = malloc(len + 1);

	/* Truncated: by one byte, and into the header. */
	spit(path, buf, len - 1);
	expect_corrupt(dir, path, "compressed bytes");
	spit(path, buf, 20);
	expect_corrupt(dir, path, "shorter than the 48-byte header");
	spit(path, buf, 0);
	expect_corrupt(dir, path, "shorter than the 48-byte header");

	/* Extended. */
	memcpy(more, buf, len);
	more[len] = 0;
	spit(path, more, len + 1);
	expect_corrupt(dir, path, "compressed bytes");

	/* Raw length lies, with the header CRC made to match. */
	qfs_le64_put(buf + 24, 20001);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "decompresses to 20000 bytes but the header says 20001");
	qfs_le64_put(buf + 24, 19999);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "decompresses to 20000 bytes but the header says 19999");
	qfs_le64_put(buf + 24, 100);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "decompresses to more than 100 bytes");
	qfs_le64_put(buf + 24, (8ull << 30) + 1);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "over the");
	qfs_le64_put(buf + 24, 20000);

	/* Compressed length lie. */
	qfs_le64_put(buf + 32, len - 49);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "compressed bytes");

	/* Header and name disagree. */
	qfs_le64_put(buf + 32, len - 48);
	qfs_le64_put(buf + 8, 6);
	reseal_header(buf);
	spit(path, buf, len);
	expect_corrupt(dir, path, "file name");
	free(more);
	free(buf);
}

static void test_corrupt_payload(void **state)
{
	const char *dir = *state;
	uint8_t *buf;
	size_t len;
	const char *path = fresh(dir, &buf, &len);

	buf[48 + (len - 48) / 2] ^= 0x01;
	spit(path, buf, len);
	expect_corrupt(dir, path, "bad payload CRC");

	/* Garbage that passes the CRC still has to be valid zlib. */
	memset(buf + 48, 0x77, len - 48);
	qfs_le32_put(buf + 40, (uint32_t)crc32(0, buf + 48, (uInt)(len - 48)));
	spit(path, buf, len);
	expect_corrupt(dir, path, "compressed data invalid");
	free(buf);
}

static void test_no_fallback_to_older(void **state)
{
	const char *dir = *state;
	uint8_t *a = image(1000, 4);
	uint8_t *buf;
	size_t len;
	const char *path = snap_path(dir, 9, 1);

	/* An older good snapshot must not be served in place of a newer
	 * damaged one: entries it covers may be gone from the WAL. */
	assert_int_equal(snapfile_write(dir, 8, 1, a, 1000, 2), 0);
	assert_int_equal(snapfile_write(dir, 9, 1, a, 1000, 2), 0);
	buf = slurp(path, &len);
	spit(path, buf, len - 2);
	expect_corrupt(dir, path, "compressed bytes");
	free(buf);
	free(a);
}

/* ---- Backup files: any name, written piece by piece ------------------------ */

static size_t count_dir(const char *path)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(path);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_writer_pieces_round_trip(void **state)
{
	const char *dir = *state;
	size_t n = 700000, flen;
	uint8_t *img = image(n, 5), *data = NULL, *file;
	struct snapfile_writer *w;
	struct snapfile_info info, got;
	char path[512], err[512];
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/backup.db", dir);
	assert_int_equal(snapfile_writer_create(path, 42, 7, &w, err, sizeof(err)), 0);
	/* Pieces of odd sizes, one empty. */
	for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 + 1) {
		size_t k = n - off < step ? n - off : step;

		assert_int_equal(snapfile_writer_append(w, img + off, k, err, sizeof(err)), 0);
		assert_int_equal(snapfile_writer_append(w, img, 0, err, sizeof(err)), 0);
	}
	/* Nothing under the final name before commit; only the tmp file. */
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_dir(dir), 1);
	assert_int_equal(snapfile_writer_commit(w, &info, err, sizeof(err)), 0);
	snapfile_writer_destroy(w);
	assert_int_equal(count_dir(dir), 1);
	assert_int_equal(info.index, 42);
	assert_int_equal(info.term, 7);
	assert_int_equal(info.raw_len, n);

	/* The same format as a member's snapshot file. */
	file = slurp(path, &flen);
	assert_memory_equal(file, "QFSSNAP1", 8);
	assert_int_equal(qfs_le64_get(file + 32), flen - 48);
	assert_int_equal(info.comp_len, flen - 48);
	free(file);

	assert_int_equal(snapfile_read(path, &got, &data, &len, err, sizeof(err)), 0);
	assert_int_equal(got.index, 42);
	assert_int_equal(got.term, 7);
	assert_int_equal(got.raw_len, n);
	assert_int_equal(len, n);
	assert_memory_equal(data, img, n);
	free(data);
	/* Verify only: no image handed out. */
	memset(&got, 0, sizeof(got));
	assert_int_equal(snapfile_read(path, &got, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(got.raw_len, n);
	free(img);
}

static void test_writer_destroy_and_replace(void **state)
{
	const char *dir = *state;
	uint8_t *a = image(5000, 1), *b = image(6000, 2), *data;
	struct snapfile_writer *w;
	struct snapfile_info info;
	char path[512], err[512];
	size_t len;

	/* Given up before commit: nothing left behind. */
	snprintf(path, sizeof(path), "%s/b.snap", dir);
	assert_int_equal(snapfile_writer_create(path, 1, 1, &w, err, sizeof(err)), 0);
	assert_int_equal(snapfile_writer_append(w, a, 5000, err, sizeof(err)), 0);
	snapfile_writer_destroy(w);
	assert_int_equal(count_dir(dir), 0);

	/* A new backup replaces the old one only on commit. */
	assert_int_equal(snapfile_writer_create(path, 1, 1, &w, err, sizeof(err)), 0);
	assert_int_equal(snapfile_writer_append(w, a, 5000, err, sizeof(err)), 0);
	assert_int_equal(snapfile_writer_commit(w, NULL, err, sizeof(err)), 0);
	snapfile_writer_destroy(w);
	assert_int_equal(snapfile_writer_create(path, 2, 1, &w, err, sizeof(err)), 0);
	assert_int_equal(snapfile_writer_append(w, b, 6000, err, sizeof(err)), 0);
	assert_int_equal(snapfile_read(path, &info, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(info.index, 1);
	assert_int_equal(snapfile_writer_commit(w, NULL, err, sizeof(err)), 0);
	snapfile_writer_destroy(w);
	assert_int_equal(snapfile_read(path, &info, &data, &len, err, sizeof(err)), 0);
	assert_int_equal(info.index, 2);
	assert_int_equal(len, 6000);
	assert_memory_equal(data, b, 6000);
	free(data);
	assert_int_equal(count_dir(dir), 1);

	/* A directory that does not exist: one line naming it. */
	snprintf(path, sizeof(path), "%s/nope/b.snap", dir);
	assert_int_equal(snapfile_writer_create(path, 1, 1, &w, err, sizeof(err)), QFS_EIO);
	assert_null(w);
	assert_non_null(strstr(err, "nope"));
	free(a);
	free(b);
}

static void test_read_any_name_and_damage(void **state)
{
	const char *dir = *state;
	uint8_t *buf;
	size_t len;
	const char *snap = fresh(dir, &buf, &len);
	char path[512], err[512];
	struct snapfile_info info;

	(void)snap;
	/* Any name works, and damage is found the same way. */
	snprintf(path, sizeof(path), "%s/copy", dir);
	spit(path, buf, len);
	assert_int_equal(snapfile_read(path, &info, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(info.index, 5);
	spit(path, buf, len - 10);
	assert_int_equal(snapfile_read(path, &info, NULL, NULL, err, sizeof(err)), QFS_ECORRUPT);
	assert_non_null(strstr(err, "truncated"));
	buf[48 + 100] ^= 4;
	spit(path, buf, len);
	assert_int_equal(snapfile_read(path, &info, NULL, NULL, err, sizeof(err)), QFS_ECORRUPT);
	assert_non_null(strstr(err, "bad payload CRC"));
	assert_non_null(strstr(err, path));
	/* Not a file at all. */
	assert_int_equal(snapfile_read(dir, &info, NULL, NULL, err, sizeof(err)), QFS_EIO);
	assert_non_null(strstr(err, "not a regular file"));
	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(snapfile_read(path, &info, NULL, NULL, err, sizeof(err)), QFS_EIO);
	assert_non_null(strstr(err, "missing"));
	free(buf);
}

static void test_list(void **state)
{
	const char *dir = *state;
	uint8_t *a = image(100, 1);
	struct snapfile_name *v;
	char tmp[512], err[256];
	size_t n;

	assert_int_equal(snapfile_list(dir, &v, &n, err, sizeof(err)), QFS_ENOENT);
	assert_null(v);
	assert_int_equal(snapfile_write(dir, 3, 1, a, 100, 5), 0);
	assert_int_equal(snapfile_write(dir, 9, 2, a, 100, 5), 0);
	assert_int_equal(snapfile_write(dir, 9, 1, a, 100, 5), 0);
	snprintf(tmp, sizeof(tmp), "%s/snap/tmp-x", dir);
	spit(tmp, a, 10);
	assert_int_equal(snapfile_list(dir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].index, 9);
	assert_int_equal(v[0].term, 2);
	assert_string_equal(v[0].name, "0000000000000009-0000000000000002.snap");
	assert_int_equal(v[1].term, 1);
	assert_int_equal(v[2].index, 3);
	free(v);
	/* Listing removes nothing. */
	assert_int_equal(access(tmp, F_OK), 0);
	free(a);
}

int main(void)
{
	qfs_log_set_level("error");
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_round_trip),
	    T(test_none),
	    T(test_keep_and_newest),
	    T(test_tmp_leftovers),
	    T(test_too_big),
	    T(test_corrupt_magic_and_header),
	    T(test_corrupt_lengths),
	    T(test_corrupt_payload),
	    T(test_no_fallback_to_older),
	    T(test_writer_pieces_round_trip),
	    T(test_writer_destroy_and_replace),
	    T(test_read_any_name_and_damage),
	    T(test_list),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
