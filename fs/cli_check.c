/*
 * `quorumfs check DATA_DIR`: verifies a data dir offline, reading it the
 * way a member's start does and a little more: every snapshot file (CRCs,
 * lengths; the newest one also decoded and its store loaded, as a member
 * would), every WAL segment (CRCs, record structure, index continuity after
 * the newest snapshot, entry types) and the hard state against the log. A
 * torn tail is reported as such (a member truncates it when it starts), not
 * as damage; damage is named by file (and offset, in the WAL) and exits 1.
 * Reads only, under the data dir's shared lock: refused while a member runs
 * there. Everything is gathered first, then printed (text or one JSON
 * object).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/wal.h"
#include "cli_impl.h"

#define PROBLEMS_MAX 16 /* listed; more are counted */

const char cli_check_details[] =
    "Reads only. Exits 0 when a member could start from DATA_DIR and serve what it\n"
    "holds (a torn WAL tail, which a member drops at start, is reported but is not\n"
    "damage), 1 when anything is damaged (each named with its file, and offset in\n"
    "the WAL) or a member is running on DATA_DIR.\n";

struct snap_row {
	char file[SNAPFILE_NAME_LEN + 8]; /* "snap/NAME" */
	struct snapfile_info info;
	bool ok;
};

struct seg_row {
	char file[40]; /* "wal/NAME" */
	uint64_t size, records, torn_at;
};

struct report {
	const char *dir;
	struct snap_row *snaps;
	size_t nsnaps;
	struct cli_image image; /* the newest snapshot, when it loads */
	bool have_image;
	uint64_t after; /* the newest snapshot's index: the WAL continues after it */
	uint64_t snap_term;
	struct seg_row *segs;
	size_t nsegs, segcap;
	struct wal_summary sum;
	bool have_wal;
	char *problems[PROBLEMS_MAX];
	size_t nproblems;
};

static void problem(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct report *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nproblems < PROBLEMS_MAX) {
		va_start(ap, fmt);
		if (vasprintf(&r->problems[r->nproblems], fmt, ap) < 0)
			r->problems[r->nproblems] = NULL;
		va_end(ap);
	}
	r->nproblems++;
}

/* "DIR/wal/x" as "wal/x": the part a reader needs, the data dir is known. */
static const char *rel(const struct report *r, const char *path)
{
	size_t n = strlen(r->dir);

	if (strncmp(path, r->dir, n) == 0 && path[n] == '/')
		return path + n + 1;
	return path;
}

static void check_snapshots(struct report *r)
{
	struct snapfile_name *v = NULL;
	char err[4400], path[4200];
	size_t n = 0;
	int rv = snapfile_list(r->dir, &v, &n, err, sizeof(err));

	if (rv && rv != QFS_ENOENT) {
		problem(r, "%s", err);
		return;
	}
	r->snaps = calloc(n ? n : 1, sizeof(*r->snaps));
	if (!r->snaps) {
		problem(r, "out of memory");
		free(v);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct snap_row *row = &r->snaps[r->nsnaps++];

		snprintf(row->file, sizeof(row->file), "snap/%s", v[i].name);
		snprintf(path, sizeof(path), "%s/%s", r->dir, row->file);
		/* The newest is what a member starts from: load it whole. */
		if (i == 0) {
			rv = cli_image_load(path, &r->image, err, sizeof(err));
			r->have_image = rv == 0;
			row->info = r->image.info;
		} else {
			rv = snapfile_read(path, &row->info, NULL, NULL, err, sizeof(err));
		}
		row->ok = rv == 0;
		if (rv)
			problem(r, "%s", err);
	}
	if (n) {
		r->after = v[0].index;
		r->snap_term = v[0].term;
	}
	free(v);
}

static int on_segment(void *arg, const struct wal_segment_info *seg)
{
	struct report *r = arg;
	struct seg_row *row;

	if (r->nsegs == r->segcap) {
		size_t cap = r->segcap ? r->segcap * 2 : 16;
		struct seg_row *grown = realloc(r->segs, cap * sizeof(*grown));

		if (!grown)
			return QFS_ENOMEM;
		r->segs = grown;
		r->segcap = cap;
	}
	row = &r->segs[r->nsegs++];
	snprintf(row->file, sizeof(row->file), "%s", rel(r, seg->path));
	row->size = seg->size;
	row->records = seg->records;
	row->torn_at = seg->torn_at;
	return 0;
}

/* What a member's replay refuses beyond the WAL's own checks. */
static int on_record(void *arg, const struct wal_record *rec, const struct wal_pos *pos)
{
	struct report *r = arg;

	if (rec->type == WAL_ENTRY && !pos->covered &&
	    (rec->len < 1 || rec->data[0] < RAFT_ENTRY_NORMAL || rec->data[0] > RAFT_ENTRY_NOOP))
		problem(r, "%s: entry %" PRIu64 " at offset %" PRIu64 " has no valid entry type",
			rel(r, pos->path), rec->index, pos->offset);
	return 0;
}

static void check_wal(struct report *r)
{
	struct wal_inspect_cb cb = {on_record, on_segment, r};
	char err[4400];
	uint64_t log_term;
	int rv = wal_inspect(r->dir, r->after, &cb, &r->sum, err, sizeof(err));

	r->have_wal = rv != QFS_ENOENT;
	if (rv == QFS_ENOENT && r->nsnaps)
		problem(r, "%s/wal is missing: the hard state (term, vote) is lost", r->dir);
	else if (rv == QFS_ENOMEM)
		problem(r, "out of memory");
	else if (rv && rv != QFS_ENOENT)
		problem(r, "%s", err);
	if (rv)
		return;
	/* Raft's log ends at the last entry written, or at the snapshot. */
	log_term = r->sum.last_term > r->snap_term ? r->sum.last_term : r->snap_term;
	if (log_term && (!r->sum.have_hs || r->sum.hs_term < log_term))
		problem(r,
			"%s/wal: the hard state's term %" PRIu64
			" is below the log's last term %" PRIu64 "%s: a member would not start",
			r->dir, r->sum.hs_term, log_term, r->sum.have_hs ? "" : " (no hard state)");
}

static void print_text(const struct report *r)
{
	const struct wal_summary *s = &r->sum;
	char a[32], b[32], name[24];

	for (size_t i = 0; i < r->nsnaps; i++) {
		const struct snap_row *row = &r->snaps[i];

		if (row->ok)
			printf("%s: index %" PRIu64 ", term %" PRIu64 ", %s (%s compressed): ok\n",
			       row->file, row->info.index, row->info.term,
			       cli_human_size(row->info.raw_len, a, sizeof(a)),
			       cli_human_size(row->info.comp_len, b, sizeof(b)));
		else
			printf("%s: DAMAGED\n", row->file);
	}
	for (size_t i = 0; i < r->nsegs; i++) {
		const struct seg_row *row = &r->segs[i];

		printf("%s: %" PRIu64 " records, %s", row->file, row->records,
		       cli_human_size(row->size, a, sizeof(a)));
		if (row->torn_at == UINT64_MAX)
			printf(": ok\n");
		else
			printf(": torn tail at offset %" PRIu64 " (%s): %" PRIu64
			       " bytes a member drops when it starts\n",
			       row->torn_at, s->torn_why, row->size - row->torn_at);
	}
	if (r->have_image) {
		const struct cli_image *ci = &r->image;

		printf("snapshot: index %" PRIu64 ", term %" PRIu64 ", revision %" PRIu64
		       " (compacted %" PRIu64 "), %" PRIu64 " keys, %" PRIu64 " leases, members",
		       ci->info.index, ci->info.term, ci->revision, ci->compacted, ci->keys,
		       ci->leases);
		for (uint32_t i = 0; i < ci->img.members.n; i++)
			printf(
			    " %s%s",
			    cli_image_member_name(ci, ci->img.members.m[i].id, name, sizeof(name)),
			    ci->img.members.m[i].voter ? "" : "(learner)");
		putchar('\n');
	} else if (!r->nsnaps) {
		printf("snapshot: none\n");
	}
	if (r->have_wal) {
		printf("wal: %" PRIu64 " segment%s, %" PRIu64 " records, ", s->segments,
		       s->segments == 1 ? "" : "s", s->records);
		if (s->entries)
			printf("entries %" PRIu64 "..%" PRIu64 " (%" PRIu64 ")", s->first_index,
			       s->last_index, s->entries);
		else
			printf("no entries");
		if (s->have_hs)
			printf("; hard state: term %" PRIu64 ", vote %s, commit %" PRIu64 "\n",
			       s->hs_term,
			       s->hs_vote ? cli_image_member_name(r->have_image ? &r->image : NULL,
								  s->hs_vote, name, sizeof(name))
					  : "none",
			       s->hs_commit);
		else
			printf("; no hard state\n");
	}
	for (size_t i = 0; i < r->nproblems && i < PROBLEMS_MAX; i++)
		printf("DAMAGED: %s\n", r->problems[i] ? r->problems[i] : "(out of memory)");
	if (r->nproblems > PROBLEMS_MAX)
		printf("DAMAGED: ... and %zu more\n", r->nproblems - PROBLEMS_MAX);
	if (!r->nproblems)
		printf("ok%s\n", s->torn ? " (but for the torn tail, which is not damage)" : "");
}

static void print_json(const struct report *r)
{
	const struct wal_summary *s = &r->sum;
	char name[24];

	printf("{\"data_dir\": ");
	cli_json_str(r->dir);
	printf(", \"ok\": %s, \"snapshots\": [", r->nproblems ? "false" : "true");
	for (size_t i = 0; i < r->nsnaps; i++) {
		const struct snap_row *row = &r->snaps[i];

		printf("%s{\"file\": ", i ? ", " : "");
		cli_json_str(row->file);
		printf(", \"ok\": %s", row->ok ? "true" : "false");
		if (row->ok)
			printf(", \"index\": %" PRIu64 ", \"term\": %" PRIu64 ", \"size\": %" PRIu64
			       ", \"compressed\": %" PRIu64,
			       row->info.index, row->info.term, row->info.raw_len,
			       row->info.comp_len);
		putchar('}');
	}
	printf("], \"snapshot\": ");
	if (r->have_image) {
		const struct cli_image *ci = &r->image;

		printf("{\"index\": %" PRIu64 ", \"term\": %" PRIu64 ", \"revision\": %" PRIu64
		       ", \"compacted_revision\": %" PRIu64 ", \"keys\": %" PRIu64
		       ", \"leases\": %" PRIu64 ", \"members\": [",
		       ci->info.index, ci->info.term, ci->revision, ci->compacted, ci->keys,
		       ci->leases);
		for (uint32_t i = 0; i < ci->img.members.n; i++) {
			printf("%s{\"name\": ", i ? ", " : "");
			cli_json_str(
			    cli_image_member_name(ci, ci->img.members.m[i].id, name, sizeof(name)));
			printf(", \"id\": \"%016" PRIx64 "\", \"voter\": %s}",
			       ci->img.members.m[i].id,
			       ci->img.members.m[i].voter ? "true" : "false");
		}
		printf("]}");
	} else {
		printf("null");
	}
	printf(", \"wal\": ");
	if (r->have_wal) {
		printf("{\"segments\": [");
		for (size_t i = 0; i < r->nsegs; i++) {
			printf("%s{\"file\": ", i ? ", " : "");
			cli_json_str(r->segs[i].file);
			printf(", \"size\": %" PRIu64 ", \"records\": %" PRIu64 "}",
			       r->segs[i].size, r->segs[i].records);
		}
		printf("], \"records\": %" PRIu64 ", \"entries\": %" PRIu64
		       ", \"first_index\": %" PRIu64 ", \"last_index\": %" PRIu64
		       ", \"last_term\": %" PRIu64 ", \"hard_state\": ",
		       s->records, s->entries, s->first_index, s->last_index, s->last_term);
		if (s->have_hs) {
			printf("{\"term\": %" PRIu64 ", \"vote\": ", s->hs_term);
			if (s->hs_vote)
				cli_json_str(cli_image_member_name(r->have_image ? &r->image : NULL,
								   s->hs_vote, name, sizeof(name)));
			else
				printf("null");
			printf(", \"commit\": %" PRIu64 "}", s->hs_commit);
		} else
			printf("null");
		printf(", \"torn\": ");
		if (s->torn) {
			printf("{\"file\": \"wal/%s\", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64
			       ", \"why\": ",
			       s->torn_file, s->torn_offset, s->torn_bytes);
			cli_json_str(s->torn_why);
			putchar('}');
		} else {
			printf("null");
		}
		putchar('}');
	} else {
		printf("null");
	}
	printf(", \"problems\": [");
	for (size_t i = 0; i < r->nproblems && i < PROBLEMS_MAX; i++) {
		printf("%s", i ? ", " : "");
		cli_json_str(r->problems[i] ? r->problems[i] : "(out of memory)");
	}
	printf("], \"more_problems\": %zu}\n",
	       r->nproblems > PROBLEMS_MAX ? r->nproblems - PROBLEMS_MAX : 0);
}

int cli_check_run(struct cli *c)
{
	struct report r = {.dir = c->args[0]};
	int fd, rv = cli_datadir_open(c, r.dir, false, &fd);

	if (rv)
		return rv;
	raft_dedup_init(&r.image.img.dedup);
	check_snapshots(&r);
	check_wal(&r);
	if (c->json)
		print_json(&r);
	else
		print_text(&r);
	if (r.nproblems)
		rv = cli_fail(c, "damaged: %s%s", r.problems[0] ? r.problems[0] : "(out of memory)",
			      r.nproblems > 1 ? " (and more, listed above)" : "");
	for (size_t i = 0; i < r.nproblems && i < PROBLEMS_MAX; i++)
		free(r.problems[i]);
	cli_image_close(&r.image);
	free(r.snaps);
	free(r.segs);
	if (fd >= 0)
		close(fd);
	return rv;
}
