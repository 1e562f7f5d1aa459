/*
 * `quorumfs dump-wal DATA_DIR`: a data dir's snapshot files (index, term,
 * sizes; the newest one's members) and then every WAL record in file order
 * with its place (file:offset): hard states, snapshot markers and entries,
 * decoded (the transaction's ops with their keys, lease ops, compactions,
 * member addresses, membership changes). With -w json, one object per line.
 *
 * Entries a snapshot already holds are shown too, marked: replay skips
 * them. Member ids are shown as names once something named them (the
 * newest snapshot's address book, a membership change, a member publishing
 * its addresses). Reads only; a running member is only warned about. A
 * torn tail is shown and is not an error; damage ends the dump with the
 * file and offset on stderr and exit 1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../store/entry.h"
#include "../store/wal.h"
#include "auth.h"
#include "cli_impl.h"

struct dump {
	const struct cli *c;
	const char *dir;
	struct book names; /* what names the ids met so far */
	uint64_t after;	   /* the newest snapshot's index */
};

static const char *op_names[] = {
    [STORE_OP_PUT] = "put",
    [STORE_OP_DELETE] = "delete",
    [STORE_OP_RENAME] = "rename",
    [STORE_OP_SETATTR] = "setattr",
    [STORE_OP_SETXATTR] = "setxattr",
    [STORE_OP_RMXATTR] = "rmxattr",
    [STORE_OP_LEASE_GRANT] = "lease-grant",
    [STORE_OP_LEASE_RENEW] = "lease-renew",
    [STORE_OP_LEASE_REVOKE] = "lease-revoke",
    [STORE_OP_LEASE_ATTACH] = "lease-attach",
    [STORE_OP_LEASE_EXPIRE] = "lease-expire",
};

static const char *cmp_targets[] = {
    [STORE_CMP_VALUE] = "value",
    [STORE_CMP_VERSION] = "version",
    [STORE_CMP_CREATE] = "create_revision",
    [STORE_CMP_MOD] = "mod_revision",
};

static const char *cmp_ops[] = {
    [STORE_CMP_EQ] = "=", [STORE_CMP_NE] = "!=", [STORE_CMP_LT] = "<", [STORE_CMP_GT] = ">"};

static const char *conf_ops[] = {
    [0] = "bootstrap",
    [RAFT_CONF_ADD_LEARNER] = "add-learner",
    [RAFT_CONF_PROMOTE] = "promote",
    [RAFT_CONF_REMOVE] = "remove",
};

/* entry_decode() accepts only known values: the tables cover them. */
static const char *name_of(const char *const *tab, size_t n, unsigned v)
{
	return v < n && tab[v] ? tab[v] : "?";
}
#define NAME_OF(tab, v) name_of(tab, sizeof(tab) / sizeof(tab[0]), (unsigned)(v))

static const char *member(const struct dump *d, uint64_t id, char *buf, size_t len)
{
	const struct book_entry *e = book_find(&d->names, id);

	if (e && e->name[0])
		return e->name;
	snprintf(buf, len, "%016" PRIx64, id);
	return buf;
}

/* A string field: quoted JSON, or escaped text. */
static void str_out(const struct dump *d, const char *s)
{
	if (d->c->json)
		cli_json_str(s);
	else
		cli_print_escaped((const uint8_t *)s, strlen(s));
}

static void time_out(int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	printf("%s.%03dZ", buf, (int)(ns % 1000000000 / 1000000));
}

static void op_out(const struct dump *d, const struct store_op *op)
{
	bool json = d->c->json;
	bool lease_only = op->type >= STORE_OP_LEASE_GRANT && op->type != STORE_OP_LEASE_ATTACH;

	printf(json ? "{\"op\": \"%s\"" : "%s", NAME_OF(op_names, op->type));
	if (!lease_only) {
		printf(json ? ", \"key\": " : " ");
		str_out(d, op->key);
	}
	switch (op->type) {
	case STORE_OP_PUT:
		printf(json ? ", \"type\": \"%s\", \"value_len\": %zu" : " (%s, %zu bytes)",
		       cli_type_name((uint8_t)op->ftype), op->value_len);
		break;
	case STORE_OP_DELETE:
		if (op->flags & STORE_DEL_RECURSIVE)
			printf(json ? ", \"recursive\": true" : " recursive");
		break;
	case STORE_OP_RENAME:
		printf(json ? ", \"dst\": " : " -> ");
		str_out(d, op->dst);
		if (op->flags & STORE_RENAME_EXCHANGE)
			printf(json ? ", \"exchange\": true" : " (exchange)");
		if (op->flags & STORE_RENAME_NOREPLACE)
			printf(json ? ", \"noreplace\": true" : " (noreplace)");
		break;
	case STORE_OP_SETATTR:
		if (op->flags & STORE_ATTR_MODE)
			printf(json ? ", \"mode\": %" PRIu32 : " mode=%04" PRIo32, op->mode);
		if (op->flags & STORE_ATTR_UID)
			printf(json ? ", \"uid\": %" PRIu32 : " uid=%" PRIu32, op->uid);
		if (op->flags & STORE_ATTR_GID)
			printf(json ? ", \"gid\": %" PRIu32 : " gid=%" PRIu32, op->gid);
		if (op->flags & STORE_ATTR_MTIME)
			printf(json ? ", \"mtime_ns\": %" PRId64 : " mtime_ns=%" PRId64,
			       op->mtime_ns);
		break;
	case STORE_OP_SETXATTR:
	case STORE_OP_RMXATTR:
		printf(json ? ", \"name\": " : " ");
		str_out(d, op->xname);
		if (op->type == STORE_OP_SETXATTR)
			printf(json ? ", \"value_len\": %zu" : " (%zu bytes)", op->value_len);
		break;
	case STORE_OP_LEASE_GRANT:
		printf(json ? ", \"lease\": \"%" PRIx64 "\", \"ttl_ms\": %" PRId64
			    : " %" PRIx64 " ttl=%" PRId64 "ms",
		       op->lease_id, op->ttl_ms);
		break;
	case STORE_OP_LEASE_ATTACH:
		printf(json ? ", \"lease\": \"%" PRIx64 "\"" : " lease=%" PRIx64, op->lease_id);
		break;
	case STORE_OP_LEASE_EXPIRE:
		printf(json ? ", \"lease\": \"%" PRIx64 "\", \"generation\": %" PRIu64
			    : " %" PRIx64 " generation=%" PRIu64,
		       op->lease_id, op->lease_gen);
		break;
	default: /* renew, revoke */
		printf(json ? ", \"lease\": \"%" PRIx64 "\"" : " %" PRIx64, op->lease_id);
		break;
	}
	if (json)
		putchar('}');
}

static void ops_out(const struct dump *d, const char *label, const struct store_op *ops, size_t n)
{
	bool json = d->c->json;

	if (json)
		printf(", \"%s\": [", label);
	else if (label)
		printf(" %s:", label);
	for (size_t i = 0; i < n; i++) {
		printf(json ? (i ? ", " : "") : (i ? "; " : " "));
		op_out(d, &ops[i]);
	}
	if (json)
		putchar(']');
}

static void txn_out(const struct dump *d, const struct store_txn *t)
{
	bool json = d->c->json;

	if (t->ncmps) {
		printf(json ? ", \"compares\": [" : " if");
		for (size_t i = 0; i < t->ncmps; i++) {
			const struct store_cmp *cmp = &t->cmps[i];

			if (json) {
				printf("%s{\"target\": \"%s\", \"op\": \"%s\", \"key\": ",
				       i ? ", " : "", NAME_OF(cmp_targets, cmp->target),
				       NAME_OF(cmp_ops, cmp->op));
				cli_json_str(cmp->key);
				if (cmp->target == STORE_CMP_VALUE)
					printf(", \"value_len\": %zu}", cmp->value_len);
				else
					printf(", \"num\": %" PRIu64 "}", cmp->num);
				continue;
			}
			printf("%s %s(", i ? " and" : "", NAME_OF(cmp_targets, cmp->target));
			str_out(d, cmp->key);
			if (cmp->target == STORE_CMP_VALUE)
				printf(") %s (%zu bytes)", NAME_OF(cmp_ops, cmp->op),
				       cmp->value_len);
			else
				printf(") %s %" PRIu64, NAME_OF(cmp_ops, cmp->op), cmp->num);
		}
		if (json)
			putchar(']');
	}
	/* A plain transaction is its ops; "then" only after compares. */
	if (json || t->ncmps || t->nelse)
		ops_out(d, "then", t->then_ops, t->nthen);
	else
		ops_out(d, NULL, t->then_ops, t->nthen);
	if (t->nelse || json)
		ops_out(d, "else", t->else_ops, t->nelse);
}

/* A store entry (RAFT_ENTRY_NORMAL). */
static void normal_out(struct dump *d, const uint8_t *p, size_t len)
{
	bool json = d->c->json;
	struct entry *e;
	char buf[24];

	if (entry_decode(p, len, &e) != 0) {
		printf(json ? ", \"kind\": \"undecodable\", \"len\": %zu"
			    : " undecodable (%zu bytes)",
		       len);
		return;
	}
	if (e->type == ENTRY_MEMBER) /* it names itself: use the name from here on */
		book_set(&d->names, e->member.id, e->member.name, "", "");
	printf(json ? ", \"kind\": \"%s\", \"origin\": " : " %s from ",
	       e->type == ENTRY_TXN	  ? "txn"
	       : e->type == ENTRY_COMPACT ? "compact"
	       : e->type == ENTRY_AUTH	  ? "auth"
					  : "member");
	if (json)
		cli_json_str(member(d, e->origin, buf, sizeof(buf)));
	else
		fputs(member(d, e->origin, buf, sizeof(buf)), stdout);
	printf(json ? ", \"request_id\": %" PRIu64 ", \"time_ns\": %" PRId64 : " request %" PRIu64,
	       e->request_id, e->time_ns);
	if (!json) {
		printf(" at ");
		time_out(e->time_ns);
		putchar(':');
	}
	if (e->type == ENTRY_TXN) {
		txn_out(d, &e->txn);
	} else if (e->type == ENTRY_COMPACT) {
		printf(json ? ", \"revision\": %" PRIu64 : " compact before revision %" PRIu64,
		       e->compact_rev);
	} else if (e->type == ENTRY_AUTH) {
		printf(json ? ", \"change\": \"%s\", \"name\": " : " %s ",
		       auth_op_name(e->auth.op));
		str_out(d, e->auth.name);
		if (e->auth.op == AUTH_ROLE_GRANT)
			printf(json ? ", \"permission\": \"%s\"" : " %s",
			       auth_perm_name(e->auth.perm));
		printf(json ? ", \"arg\": " : " ");
		str_out(d, e->auth.arg);
	} else {
		printf(json ? ", \"member\": " : " member ");
		str_out(d, e->member.name);
		printf(json ? ", \"id\": \"%016" PRIx64 "\", \"peer\": "
			    : " id=%016" PRIx64 " peer=",
		       e->member.id);
		str_out(d, e->member.peer);
		printf(json ? ", \"client\": " : " client=");
		str_out(d, e->member.client);
	}
	free(e);
}

/* A membership change (RAFT_ENTRY_CONF). */
static void conf_out(struct dump *d, const uint8_t *p, size_t len)
{
	bool json = d->c->json;
	struct raft_conf_change cc;
	char buf[24];

	if (raft_conf_decode(p, len, &cc) != 0) {
		printf(json ? ", \"kind\": \"undecodable\", \"len\": %zu"
			    : " undecodable (%zu bytes)",
		       len);
		return;
	}
	if (cc.op == RAFT_CONF_ADD_LEARNER && cc.context_len) {
		/* context: name NUL peer NUL client (NUL), as the member wrote it */
		char ctx[RAFT_CONF_CONTEXT_MAX + 3] = {0};

		memcpy(ctx, cc.context, cc.context_len);
		book_set(&d->names, cc.id, ctx, "", "");
	}
	printf(json ? ", \"kind\": \"conf\", \"op\": \"%s\"" : " conf %s",
	       NAME_OF(conf_ops, cc.op));
	if (cc.op) {
		printf(json ? ", \"member\": " : " ");
		str_out(d, member(d, cc.id, buf, sizeof(buf)));
	}
	printf(json ? ", \"members\": [" : ": members");
	for (uint32_t i = 0; i < cc.members.n; i++) {
		const struct raft_member *m = &cc.members.m[i];

		if (json) {
			printf("%s{\"member\": ", i ? ", " : "");
			cli_json_str(member(d, m->id, buf, sizeof(buf)));
			printf(", \"voter\": %s}", m->voter ? "true" : "false");
		} else {
			printf(" %s%s", member(d, m->id, buf, sizeof(buf)),
			       m->voter ? "" : "(learner)");
		}
	}
	if (json)
		putchar(']');
}

static int on_record(void *arg, const struct wal_record *rec, const struct wal_pos *pos)
{
	struct dump *d = arg;
	bool json = d->c->json;
	const char *file = pos->path + strlen(d->dir) + 1; /* "wal/NAME" */
	char buf[24];

	if (json) {
		printf("{\"file\": ");
		cli_json_str(file);
		printf(", \"offset\": %" PRIu64 ", \"record\": ", pos->offset);
	} else {
		printf("%s:%" PRIu64 " ", file, pos->offset);
	}
	if (rec->type == WAL_HARDSTATE) {
		printf(json ? "\"hardstate\", \"term\": %" PRIu64 ", \"vote\": "
			    : "hardstate term=%" PRIu64 " vote=",
		       rec->hs_term);
		if (json && rec->hs_vote)
			cli_json_str(member(d, rec->hs_vote, buf, sizeof(buf)));
		else if (json)
			fputs("null", stdout);
		else
			fputs(rec->hs_vote ? member(d, rec->hs_vote, buf, sizeof(buf)) : "none",
			      stdout);
		printf(json ? ", \"commit\": %" PRIu64 "}\n" : " commit=%" PRIu64 "\n",
		       rec->hs_commit);
		return 0;
	}
	if (rec->type == WAL_SNAPSHOT) {
		printf(json ? "\"snapshot\", \"index\": %" PRIu64 ", \"term\": %" PRIu64 "}\n"
			    : "snapshot index=%" PRIu64 " term=%" PRIu64
			      " (a snapshot was installed: the log restarts after it)\n",
		       rec->index, rec->term);
		return 0;
	}
	printf(json ? "\"entry\", \"index\": %" PRIu64 ", \"term\": %" PRIu64 ", \"covered\": %s"
		    : "entry index=%" PRIu64 " term=%" PRIu64 "%s",
	       rec->index, rec->term,
	       json ? (pos->covered ? "true" : "false")
		    : (pos->covered ? " (in the snapshot)" : ""));
	if (rec->len < 1)
		printf(json ? ", \"kind\": \"empty\"" : " empty");
	else if (rec->data[0] == RAFT_ENTRY_NORMAL)
		normal_out(d, rec->data + 1, rec->len - 1);
	else if (rec->data[0] == RAFT_ENTRY_CONF)
		conf_out(d, rec->data + 1, rec->len - 1);
	else if (rec->data[0] == RAFT_ENTRY_NOOP)
		printf(json ? ", \"kind\": \"noop\"" : " noop (a new leader's first entry)");
	else
		printf(json ? ", \"kind\": \"unknown\", \"type\": %u" : " unknown entry type %u",
		       rec->data[0]);
	printf(json ? "}\n" : "\n");
	return 0;
}

/* The snapshot files; returns how many are damaged. The newest one's book
 * names the members in what follows. */
static int dump_snapshots(struct dump *d)
{
	struct snapfile_name *v = NULL;
	bool json = d->c->json;
	char err[4400], path[4200], buf[24];
	size_t n = 0;
	int damaged = 0;
	int rv = snapfile_list(d->dir, &v, &n, err, sizeof(err));

	if (rv && rv != QFS_ENOENT) {
		cli_fail(d->c, "%s", err);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct cli_image ci = {0};

		snprintf(path, sizeof(path), "%s/snap/%s", d->dir, v[i].name);
		raft_dedup_init(&ci.img.dedup);
		rv = i == 0 ? cli_image_load(path, &ci, err, sizeof(err))
			    : snapfile_read(path, &ci.info, NULL, NULL, err, sizeof(err));
		if (json) {
			printf("{\"file\": \"snap/%s\", \"record\": \"snapshot-file\", \"index\": "
			       "%" PRIu64 ", \"term\": %" PRIu64,
			       v[i].name, v[i].index, v[i].term);
			if (rv == 0)
				printf(", \"size\": %" PRIu64 ", \"compressed\": %" PRIu64,
				       ci.info.raw_len, ci.info.comp_len);
		} else {
			printf("snap/%s snapshot-file index=%" PRIu64 " term=%" PRIu64, v[i].name,
			       v[i].index, v[i].term);
			if (rv == 0)
				printf(" size=%" PRIu64 " compressed=%" PRIu64, ci.info.raw_len,
				       ci.info.comp_len);
		}
		if (rv == 0 && i == 0) {
			for (size_t k = 0; k < ci.img.book.n; k++)
				book_set(&d->names, ci.img.book.e[k].id, ci.img.book.e[k].name, "",
					 "");
			printf(json ? ", \"revision\": %" PRIu64 ", \"keys\": %" PRIu64
				      ", \"members\": ["
				    : " revision=%" PRIu64 " keys=%" PRIu64 " members:",
			       ci.revision, ci.keys);
			for (uint32_t k = 0; k < ci.img.members.n; k++) {
				const char *nm =
				    member(d, ci.img.members.m[k].id, buf, sizeof(buf));

				if (json)
					printf("%s", k ? ", " : "");
				else
					putchar(' ');
				str_out(d, nm);
			}
			if (json)
				putchar(']');
		}
		if (rv) {
			damaged++;
			fprintf(stderr, "quorumfs: %s: damaged: %s\n", d->c->what, err);
			printf(json ? ", \"damaged\": true" : " DAMAGED");
		}
		printf(json ? "}\n" : "\n");
		cli_image_close(&ci);
	}
	if (n)
		d->after = v[0].index;
	free(v);
	return damaged;
}

int cli_dump_run(struct cli *c)
{
	struct dump d = {.c = c, .dir = c->args[0]};
	struct wal_inspect_cb cb = {on_record, NULL, &d};
	struct wal_summary sum;
	char err[4400];
	int fd, damaged, rv = cli_datadir_open(c, d.dir, true, &fd);

	if (rv)
		return rv;
	damaged = dump_snapshots(&d);
	rv = wal_inspect(d.dir, d.after, &cb, &sum, err, sizeof(err));
	if (rv == 0 && sum.torn) {
		if (c->json)
			printf("{\"file\": \"wal/%s\", \"offset\": %" PRIu64
			       ", \"record\": \"torn\", \"bytes\": %" PRIu64 ", \"why\": \"%s\"}\n",
			       sum.torn_file, sum.torn_offset, sum.torn_bytes, sum.torn_why);
		else
			printf("wal/%s:%" PRIu64 " torn tail (%s): %" PRIu64
			       " bytes a member drops when it starts\n",
			       sum.torn_file, sum.torn_offset, sum.torn_why, sum.torn_bytes);
	}
	if (fd >= 0)
		close(fd);
	if (rv == QFS_ENOENT && !damaged)
		return 0; /* a data dir with snapshots and no WAL yet: said what there is */
	if (rv)
		return cli_fail(c, "%s", err);
	return damaged ? 1 : 0;
}
