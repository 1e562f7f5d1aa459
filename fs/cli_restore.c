/*
 * `quorumfs snapshot restore FILE --data-dir DIR --name NAME
 * [--initial-cluster N=IP:PORT,...]`: offline, makes a new data dir from a
 * backup (`snapshot save`), from which `quorumfs serve --name NAME
 * --data-dir DIR ...` starts a member of a NEW cluster holding exactly the
 * saved keys, revisions and leases. Every member of the new cluster is
 * restored from the same file with its own --name and the same
 * --initial-cluster. docs/design.md ("Restoring a backup") says why the
 * data dir is what it is; in short, the same as a follower's after it
 * installed a leader's snapshot:
 *
 *   snap/<index>-<term>.snap  the backup's image with the Raft configuration
 *                             and address book replaced by --initial-cluster
 *                             (members sorted by id, every one a voter), at
 *                             the backup's index and term
 *   wal/<index+1>.wal         SNAPSHOT(index, term), then HARDSTATE(term,
 *                             no vote, commit = index)
 *
 * FILE is verified first (CRCs, lengths, the image decoded and its store
 * loaded) and DIR must not exist or be empty, so bad input changes nothing;
 * if writing fails part way, what was created is removed again.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/wal.h"
#include "cli_impl.h"
#include "datadir.h"
#include "server.h"

const char cli_restore_details[] =
    "Offline. Verifies FILE (a backup from snapshot save), then creates DIR (it must\n"
    "not exist, or be empty) as the data dir of member NAME of a new cluster whose\n"
    "voters are --initial-cluster (default: NAME alone); the membership in the backup\n"
    "is not used. Restore every member of the new cluster from the same FILE with the\n"
    "same --initial-cluster and its own --name and --data-dir, then start each with\n"
    "quorumfs serve --name NAME --data-dir DIR --initial-cluster ... (and its listen\n"
    "flags). The new cluster holds exactly the saved keys, revisions and leases; a\n"
    "lease whose time ran out meanwhile expires once the new cluster has a leader.\n";

static int cmp_member(const void *a, const void *b)
{
	const struct raft_member *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_book_entry(const void *a, const void *b)
{
	const struct book_entry *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* 0 if dir does not exist or is an empty directory; else prints why. */
static int dir_check_empty(const struct cli *c, const char *dir, bool *exists)
{
	struct dirent *de;
	struct stat st;
	DIR *d;

	*exists = false;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		return cli_fail(c, "%s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return cli_fail(c, "%s exists and is not a directory", dir);
	*exists = true;
	d = opendir(dir);
	if (!d)
		return cli_fail(c, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			closedir(d);
			return cli_fail(c,
					"%s is not empty: restore makes a new data dir (remove it, "
					"or give another)",
					dir);
		}
	}
	closedir(d);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level == 0)
		return 0; /* DIR itself: the caller decides */
	return remove(path);
}

/* Undoes a restore that failed part way: DIR was empty (or absent) and is
 * locked by us, so everything in it is ours. */
static void undo(const char *dir, bool created)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (created)
		rmdir(dir);
}

/* The snapshot and the WAL of the new data dir. */
static int write_data_dir(const struct cli *c, const struct cli_image *ci,
			  const struct raft_members *m, const struct book *b)
{
	const char *dir = c->data_dir;
	uint64_t index = ci->info.index, term = ci->info.term;
	struct wal_record recs[2] = {
	    {.type = WAL_SNAPSHOT, .index = index, .term = term},
	    {.type = WAL_HARDSTATE, .hs_term = term, .hs_vote = 0, .hs_commit = index},
	};
	char err[4400];
	struct wal *w;
	struct qbuf q;
	int rv;

	qbuf_init(&q);
	rv = image_head_encode(m, b, &ci->img.dedup, &ci->img.auth, &q);
	qbuf_put(&q, ci->img.store, ci->img.store_len); /* the store as saved */
	rv = rv ? rv : qbuf_error(&q);
	if (!rv)
		rv = snapfile_write(dir, index, term, q.data, q.len, 1);
	qbuf_close(&q);
	if (rv)
		return cli_fail(c, "cannot write the snapshot into %s/snap: %s", dir,
				qfs_strerror(rv));
	rv = wal_open(dir, index, NULL, NULL, &w, err, sizeof(err));
	if (rv)
		return cli_fail(c, "%s", err);
	rv = wal_write(w, recs, 2);
	wal_close(w);
	if (rv)
		return cli_fail(c, "cannot write the WAL in %s/wal: %s", dir, qfs_strerror(rv));
	return 0;
}

static void result_print(const struct cli *c, const struct cli_image *ci,
			 const struct raft_members *m, const struct book *b)
{
	const struct snapfile_info *in = &ci->info;

	if (c->json) {
		printf("{\"file\": ");
		cli_json_str(c->args[0]);
		printf(", \"data_dir\": ");
		cli_json_str(c->data_dir);
		printf(", \"name\": ");
		cli_json_str(c->name);
		printf(", \"revision\": %" PRIu64 ", \"index\": %" PRIu64 ", \"term\": %" PRIu64
		       ", \"keys\": %" PRIu64 ", \"leases\": %" PRIu64 ", \"members\": [",
		       ci->revision, in->index, in->term, ci->keys, ci->leases);
		for (uint32_t i = 0; i < m->n; i++) {
			printf("%s", i ? ", " : "");
			cli_json_str(book_find(b, m->m[i].id)->name);
		}
		printf("]}\n");
		return;
	}
	printf("restored %s into %s for member %s: revision %" PRIu64 ", index %" PRIu64
	       " (term %" PRIu64 "), %" PRIu64 " keys, %" PRIu64 " leases; new cluster:",
	       c->args[0], c->data_dir, c->name, ci->revision, in->index, in->term, ci->keys,
	       ci->leases);
	for (uint32_t i = 0; i < m->n; i++)
		printf(" %s", book_find(b, m->m[i].id)->name);
	printf("\nstart it with: quorumfs serve --name %s --data-dir %s", c->name, c->data_dir);
	if (c->initial_cluster)
		printf(" --initial-cluster %s --listen-peer %s", c->initial_cluster,
		       book_find(b, server_name_id(c->name))->peer);
	printf(" ...\n");
}

int cli_restore_run(struct cli *c)
{
	struct cli_image ci;
	struct raft_members m;
	struct book b;
	char err[4400];
	bool exists;
	int fd, rv;

	if (strlen(c->name) > BOOK_STR_MAX)
		return cli_fail(c, "member names are at most %d bytes", BOOK_STR_MAX);
	rv = image_initial_members(c->initial_cluster, c->name, "", "", &m, &b, err, sizeof(err));
	if (rv)
		return cli_fail(c, "%s", err);
	/* The same list in any order gives every member the same image. */
	qsort(m.m, m.n, sizeof(m.m[0]), cmp_member);
	qsort(b.e, b.n, sizeof(b.e[0]), cmp_book_entry);
	rv = cli_image_load(c->args[0], &ci, err, sizeof(err));
	if (rv) {
		cli_image_close(&ci);
		return cli_fail(c, "%s; nothing restored", err);
	}
	rv = dir_check_empty(c, c->data_dir, &exists);
	if (rv)
		goto out;
	rv = datadir_lock(c->data_dir, &fd, err, sizeof(err));
	if (rv) {
		rv = cli_fail(c, "%s", err);
		goto out;
	}
	rv = write_data_dir(c, &ci, &m, &b);
	if (rv)
		undo(c->data_dir, !exists);
	else
		result_print(c, &ci, &m, &b);
	close(fd);
out:
	cli_image_close(&ci);
	return rv;
}
