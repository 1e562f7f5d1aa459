/*
 * `quorumfs watch`: one WATCH stream at a time, printing its events as they
 * come; when a connection is lost it resumes on the next endpoint from the
 * last event printed, so the output has no gap and no duplicate.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli_impl.h"

/* Where a watch stands, in what was printed: every event of the revisions
 * below `next`, and the first `done` events of revision `next`. A resumed
 * stream starts at `next` and its first `done` events are skipped, so the
 * output has no gap and no duplicate across reconnections. */
struct watch_pos {
	uint64_t next, done;
	uint64_t last_rev;		 /* of the last event printed, for the order check */
	uint64_t stream_rev, stream_idx; /* this connection's count within a revision */
};

static void event_print(const struct cli *c, const struct client_event *ev)
{
	const struct client_kv *kv = &ev->kv;
	bool put = ev->type == CLIENT_EVENT_PUT;

	if (c->json) {
		printf("{\"revision\": %" PRIu64 ", \"type\": \"%s\", \"key\": ", ev->revision,
		       put ? "PUT" : "DELETE");
		cli_json_str(kv->key);
		printf(", \"kind\": \"%s\"", cli_type_name(kv->type));
		if (put) {
			printf(", \"mode\": %" PRIu32 ", \"create_revision\": %" PRIu64
			       ", \"mod_revision\": %" PRIu64 ", \"version\": %" PRIu64
			       ", \"value\": ",
			       kv->mode, kv->create_rev, kv->mod_rev, kv->version);
			cli_json_base64(kv->value, kv->value_len);
		}
		fputs("}\n", stdout);
		return;
	}
	/* A trailing '/' marks a directory (keys never end in one). */
	printf("%" PRIu64 " %s %s%s", ev->revision, put ? "PUT" : "DELETE", kv->key,
	       kv->type == STORE_DIR && strcmp(kv->key, "/") != 0 ? "/" : "");
	if (put && kv->type != STORE_DIR) {
		putchar(' ');
		cli_print_escaped(kv->value, kv->value_len);
	}
	putchar('\n');
}

enum watch_end {
	WATCH_LOST,   /* the connection broke: resume elsewhere */
	WATCH_FAILED, /* printed an error: exit 1 */
	WATCH_STDOUT, /* our reader went away: exit quietly */
};

/* Prints one frame's events, skipping what an earlier stream printed. */
static enum watch_end watch_frame(const struct cli *c, struct watch_pos *pos,
				  const struct client_resp *r)
{
	for (size_t i = 0; i < r->nevents; i++) {
		const struct client_event *ev = &r->events[i];

		if (ev->revision != pos->stream_rev) {
			pos->stream_rev = ev->revision;
			pos->stream_idx = 0;
		}
		pos->stream_idx++;
		if (ev->revision < pos->next ||
		    (ev->revision == pos->next && pos->stream_idx <= pos->done))
			continue;
		if (ev->revision < pos->last_rev) {
			cli_fail(c,
				 "the member sent revision %" PRIu64 " after %" PRIu64
				 ", out of order; stopping",
				 ev->revision, pos->last_rev);
			return WATCH_FAILED;
		}
		event_print(c, ev);
		if (ev->revision != pos->next) {
			pos->next = ev->revision;
			pos->done = 0;
		}
		pos->done++;
		pos->last_rev = ev->revision;
		/* Line by line, so `| head` and scripts see each event at once. */
		if (fflush(stdout) != 0)
			return WATCH_STDOUT;
	}
	if (r->revision >= pos->next) {
		pos->next = r->revision + 1;
		pos->done = 0;
	}
	return WATCH_LOST;
}

/* Waits for the member's next frame; false if our reader went away
 * meanwhile (a pipe whose reader closed reports POLLERR on our end), so
 * `watch | head` ends when head does, not at the next event. */
static bool watch_wait(const struct client_conn *conn)
{
	struct pollfd p[2] = {{.fd = conn->fd, .events = POLLIN},
			      {.fd = STDOUT_FILENO, .events = 0}};

	if (client_conn_buffered(conn))
		return true;
	for (;;) {
		int n = poll(p, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return true; /* client_recv() will say what is wrong */
		if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			return false;
		if (p[0].revents)
			return true;
	}
}

/*
 * One connection: WATCH from pos->next, then events until it breaks.
 * *established says whether the member accepted the watch (so losing it
 * is worth a resume elsewhere); err says why it ended.
 */
static enum watch_end watch_stream(const struct cli *c, const char *ep, struct watch_pos *pos,
				   bool *established, char *err)
{
	struct client_req r = {.type = CLIENT_REQ_WATCH,
			       .key = c->args[0],
			       .flags = c->prefix ? CLIENT_WATCH_PREFIX : 0,
			       .rev = pos->next};
	uint64_t deadline = client_now_ms() + c->eps.timeout_ms;
	enum watch_end end = WATCH_LOST;
	struct client_answer a;
	struct client_conn conn;
	struct qbuf frame;

	*established = false;
	qbuf_init(&frame);
	if (client_proto_req_encode(&r, &frame) != 0) {
		qbuf_close(&frame);
		cli_fail(c, "key too long for the protocol");
		return WATCH_FAILED;
	}
	if (client_connect(&c->eps, ep, deadline, &conn, err) != 0)
		goto out_frame;
	client_keepalive(conn.fd, 10);
	if (client_send(&conn, &frame, deadline, err) != 0)
		goto out_conn;
	pos->stream_rev = pos->stream_idx = 0;
	for (;;) {
		if (*established && !watch_wait(&conn)) {
			end = WATCH_STDOUT;
			break;
		}
		/* The first answer within the deadline; then as long as it takes. */
		if (client_recv(&conn, CLIENT_REQ_WATCH, *established ? 0 : deadline, &a, err))
			break;
		if (a.resp.status != 0) {
			if (!*established && (client_ask_elsewhere(a.resp.status) ||
					      a.resp.status == QFS_ETIMEDOUT)) {
				snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, a.resp.msg);
			} else {
				cli_fail_resp(c, &a.resp);
				end = WATCH_FAILED;
			}
			client_answer_free(&a);
			break;
		}
		*established = true;
		end = watch_frame(c, pos, &a.resp);
		client_answer_free(&a);
		if (end != WATCH_LOST)
			break;
	}
out_conn:
	client_conn_close(&conn);
out_frame:
	qbuf_close(&frame);
	return end;
}

int cli_watch_run(struct cli *c)
{
	struct watch_pos pos = {.next = c->rev};
	char err[CLIENT_ERR_MAX], lost_at[CLIENT_PROTO_ADDR_MAX + 1] = "";
	size_t at = 0, tries = 0;
	bool established, ever = false;

	if (cli_key_check(c, c->args[0]))
		return 1;
	/* Each endpoint once; after a loss, each once more, the lost one last
	 * (it may have come back by then). */
	while (tries < c->eps.n) {
		const char *ep = c->eps.ep[at];
		enum watch_end end = watch_stream(c, ep, &pos, &established, err);

		if (end == WATCH_FAILED)
			return 1;
		if (end == WATCH_STDOUT) {
			/* `| head` had enough: nothing left to say, nowhere to say it. */
			__fpurge(stdout);
			return 0;
		}
		if (established) {
			ever = true;
			tries = 0;
			snprintf(lost_at, sizeof(lost_at), "%s", ep);
			if (c->eps.n > 1)
				fprintf(
				    stderr,
				    "quorumfs: %s: connection to %s lost after revision %" PRIu64
				    " (%s); trying the other endpoints\n",
				    c->what, ep, pos.next - 1, err);
		}
		tries++;
		at = (at + 1) % c->eps.n;
	}
	if (!ever)
		return cli_fail(c, "%s", err);
	if (pos.done)
		return cli_fail(c,
				"connection to %s lost after revision %" PRIu64 " (and %" PRIu64
				" events of revision %" PRIu64 "); resume with --rev %" PRIu64,
				lost_at, pos.next - 1, pos.done, pos.next, pos.next);
	return cli_fail(
	    c, "connection to %s lost after revision %" PRIu64 "; resume with --rev %" PRIu64,
	    lost_at, pos.next - 1, pos.next);
}

const char cli_watch_details[] =
    "Prints one line per event, in revision order, with no gap and no duplicate:\n"
    "  REV PUT KEY VALUE    (control bytes in VALUE escaped: \\n \\t \\\\ \\xHH)\n"
    "  REV DELETE KEY       (a directory's KEY ends in '/')\n"
    "or with -w json one object per line (value in base64), flushed at once.\n"
    "Without --rev it starts with the next change; with --rev N it first replays\n"
    "history from revision N (an error if N was compacted, naming the oldest\n"
    "revision left). It runs until interrupted. When a connection is lost it\n"
    "resumes on the next --endpoints member from where it stopped; when none\n"
    "answers, it exits 1 saying which --rev resumes it. A watcher that stops\n"
    "reading falls behind and is cancelled by the member with the same advice.\n";
