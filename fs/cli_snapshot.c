/*
 * `quorumfs snapshot save FILE`: an online backup. One SNAPSHOT request to
 * the first endpoint that can serve it; its chunks are checked against the
 * first frame (same image, next offset) and a CRC of the whole image, and
 * compressed into FILE as they come (store/snapfile.h writer: a temporary
 * file, renamed over FILE only once whole and fsynced), so the backup is
 * never all in this process's memory and FILE is either the old one or a
 * complete new one. The result is a snapshot file like a member's own:
 * `check`-able, and what `snapshot restore` starts a new cluster from.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../common/errors.h"
#include "cli_impl.h"

const char cli_snapshot_save_details[] =
    "Asks a member (the first endpoint that can) for an image of its replicated\n"
    "state (every key with its history, leases, revisions) at a linearizable read\n"
    "point, and writes it to FILE as a zlib-compressed, CRC-checked snapshot file.\n"
    "FILE is replaced only by a complete backup (temporary file, fsync, rename).\n"
    "Prints the revision, Raft index, size and key count. The member builds the\n"
    "image in the background; it applies new writes once the image is built.\n";

enum save_end {
	SAVE_OK,
	SAVE_ELSEWHERE, /* nothing was written; the next endpoint may do it */
	SAVE_FAILED,	/* err says why */
};

struct save {
	const struct cli *c;
	const char *path, *ep;
	struct client_snapshot meta; /* of the first frame */
	struct snapfile_info info;   /* of the file written */
	uint64_t got;
	uint32_t crc;
	char err[CLIENT_ERR_MAX];
};

/* A frame that does not continue the first one: the member is broken. */
static bool frame_fits(const struct save *s, const struct client_snapshot *f)
{
	const struct client_snapshot *m = &s->meta;

	return f->index == m->index && f->term == m->term && f->revision == m->revision &&
	       f->keys == m->keys && f->leases == m->leases && f->total == m->total &&
	       f->crc == m->crc && f->offset == s->got;
}

/* Receives the stream into w. */
static enum save_end receive(struct save *s, struct client_conn *conn, struct snapfile_writer **w)
{
	uint64_t timeout = s->c->eps.timeout_ms;
	char ferr[512];

	for (;;) {
		struct client_answer a;
		const struct client_snapshot *f;

		if (client_recv(conn, CLIENT_REQ_SNAPSHOT, client_now_ms() + timeout, &a, s->err) != 0)
			return *w ? SAVE_FAILED : SAVE_ELSEWHERE;
		if (a.resp.status) {
			enum save_end end =
			    client_ask_elsewhere(a.resp.status) || a.resp.status == QFS_EBUSY
				? SAVE_ELSEWHERE
				: SAVE_FAILED;

			snprintf(s->err, sizeof(s->err), "%s: %s", s->ep, a.resp.msg);
			client_answer_free(&a);
			return *w ? SAVE_FAILED : end;
		}
		f = &a.resp.snap;
		if (!*w) {
			s->meta = *f;
			if (snapfile_writer_create(s->path, f->index, f->term, w, ferr,
						   sizeof(ferr)) != 0) {
				snprintf(s->err, sizeof(s->err), "%s", ferr);
				client_answer_free(&a);
				return SAVE_FAILED;
			}
		}
		if (!frame_fits(s, f)) {
			snprintf(s->err, sizeof(s->err),
				 "%s sent a chunk that does not continue the image (offset %" PRIu64
				 ", expected %" PRIu64 ")",
				 s->ep, f->offset, s->got);
			client_answer_free(&a);
			return SAVE_FAILED;
		}
		if (snapfile_writer_append(*w, f->chunk, f->chunk_len, ferr, sizeof(ferr)) != 0) {
			snprintf(s->err, sizeof(s->err), "%s", ferr);
			client_answer_free(&a);
			return SAVE_FAILED;
		}
		s->crc = (uint32_t)crc32_z(s->crc, f->chunk, f->chunk_len);
		s->got += f->chunk_len;
		client_answer_free(&a);
		if (s->got == s->meta.total)
			break;
	}
	if (s->crc != s->meta.crc) {
		snprintf(s->err, sizeof(s->err),
			 "the image from %s does not match its CRC: not saved", s->ep);
		return SAVE_FAILED;
	}
	if (snapfile_writer_commit(*w, &s->info, ferr, sizeof(ferr)) != 0) {
		snprintf(s->err, sizeof(s->err), "%s", ferr);
		return SAVE_FAILED;
	}
	return SAVE_OK;
}

/* One endpoint: the request, then the stream into FILE. */
static enum save_end save_from(struct save *s)
{
	struct client_req r = {.type = CLIENT_REQ_SNAPSHOT};
	uint64_t deadline = client_now_ms() + s->c->eps.timeout_ms;
	struct snapfile_writer *w = NULL;
	enum save_end end;
	struct qbuf frame;
	struct client_conn conn;

	s->got = 0;
	s->crc = 0;
	if (client_connect(&s->c->eps, s->ep, deadline, &conn, s->err) != 0)
		return SAVE_ELSEWHERE;
	qbuf_init(&frame);
	if (client_proto_req_encode(&r, &frame) != 0) {
		snprintf(s->err, sizeof(s->err), "out of memory");
		end = SAVE_FAILED;
	} else if (client_send(&conn, &frame, deadline, s->err) != 0) {
		end = SAVE_ELSEWHERE;
	} else {
		end = receive(s, &conn, &w);
	}
	/* Unless committed, the temporary file goes: FILE is untouched. */
	snapfile_writer_destroy(w);
	qbuf_close(&frame);
	client_conn_close(&conn);
	return end;
}

static void result_print(const struct save *s)
{
	const struct client_snapshot *m = &s->meta;
	char a[32], b[32];

	if (s->c->json) {
		printf("{\"file\": ");
		cli_json_str(s->path);
		printf(", \"endpoint\": ");
		cli_json_str(s->ep);
		printf(", \"revision\": %" PRIu64 ", \"index\": %" PRIu64 ", \"term\": %" PRIu64
		       ", \"keys\": %" PRIu64 ", \"leases\": %" PRIu64 ", \"size\": %" PRIu64
		       ", \"compressed\": %" PRIu64 "}\n",
		       m->revision, m->index, m->term, m->keys, m->leases, s->info.raw_len,
		       s->info.comp_len);
		return;
	}
	printf("saved %s from %s: revision %" PRIu64 ", index %" PRIu64 " (term %" PRIu64
	       "), %" PRIu64 " keys, %" PRIu64 " leases, %s (%s compressed)\n",
	       s->path, s->ep, m->revision, m->index, m->term, m->keys, m->leases,
	       cli_human_size(s->info.raw_len, a, sizeof(a)),
	       cli_human_size(s->info.comp_len, b, sizeof(b)));
}

int cli_snapshot_save_run(struct cli *c)
{
	struct save s = {.c = c, .path = c->args[0]};
	struct stat st;

	if (stat(s.path, &st) == 0 && S_ISDIR(st.st_mode))
		return cli_fail(c, "%s is a directory: give the backup file's name", s.path);
	snprintf(s.err, sizeof(s.err), "no endpoint to ask");
	for (size_t i = 0; i < c->eps.n; i++) {
		s.ep = c->eps.ep[i];
		switch (save_from(&s)) {
		case SAVE_OK:
			result_print(&s);
			return 0;
		case SAVE_FAILED:
			return cli_fail(c, "%s", s.err);
		case SAVE_ELSEWHERE:
			break;
		}
	}
	return cli_fail(c, "%s", s.err);
}
