/*
 * The control directory /.quorumfs: `status` (JSON), `members`, `metrics`
 * (Prometheus text, metrics_page.c), `leases/ID`
 * (JSON; touch renews, rm revokes: lease.c), and `rev/N/`, a read-only view
 * of the whole tree as of revision N. It is reached by name
 * and not listed in the root, so `find` or `cp -r` of the mount does not walk
 * every past revision.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"
#include "metrics_page.h"

#define REV_LISTED 100 /* `ls rev/` shows this many most recent revisions */

struct ctl_entry {
	uint64_t nodeid, parent;
	const char *name;
	bool dir;
};

static const struct ctl_entry entries[] = {
	{NODE_CTL_DIR, STORE_ROOT_INO, CTL_NAME, true},
	{NODE_CTL_STATUS, NODE_CTL_DIR, "status", false},
	{NODE_CTL_MEMBERS, NODE_CTL_DIR, "members", false},
	{NODE_CTL_METRICS, NODE_CTL_DIR, "metrics", false},
	{NODE_CTL_REV, NODE_CTL_DIR, "rev", true},
	{NODE_CTL_LEASES, NODE_CTL_DIR, "leases", true},
};
#define NENTRIES (sizeof(entries) / sizeof(entries[0]))

static const struct ctl_entry *find(uint64_t nodeid)
{
	for (size_t i = 0; i < NENTRIES; i++) {
		if (entries[i].nodeid == nodeid)
			return &entries[i];
	}
	return NULL;
}

static bool lease_exists(struct fs *fs, uint64_t id)
{
	struct store_lease l;
	int rv;

	server_rdlock(fs->srv);
	rv = store_lease_get(server_store(fs->srv), id, &l);
	server_unlock(fs->srv);
	return rv == 0;
}

int ctl_stat(struct fs *fs, uint64_t nodeid, struct stat *st)
{
	const struct ctl_entry *c = find(nodeid);
	bool lease = (nodeid & NODE_LEASE_BIT) && lease_exists(fs, nodeid & FS_LEASE_ID_MASK);

	if (!c && !lease)
		return QFS_ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_ino = nodeid;
	st->st_mode = lease ? S_IFREG | 0644 : c->dir ? S_IFDIR | 0555 : S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	clock_gettime(CLOCK_REALTIME, &st->st_mtim);
	st->st_atim = st->st_ctim = st->st_mtim;
	return 0;
}

/* rev/N: the root as of revision N, when N is still in history. */
static int rev_lookup(struct fs *fs, const char *name, struct fuse_entry_param *e)
{
	struct store *s = server_store(fs->srv);
	struct store_kv kv;
	char *end;
	uint64_t rev;
	int rv;

	rev = strtoull(name, &end, 10);
	if (*name < '0' || *name > '9' || *end)
		return QFS_ENOENT;
	server_rdlock(fs->srv);
	rv = store_get(s, "/", rev, &kv);
	if (rv == QFS_ECOMPACTED || rv == QFS_EFUTUREREV) {
		LOG_INFO("/.quorumfs/rev/%s: %s (history holds revisions %" PRIu64 "..%" PRIu64 ")",
			 name, qfs_strerror(rv), store_compacted_revision(s), store_revision(s));
	} else if (rv == 0) {
		e->ino = nodes_rev_lookup(fs->nodes, rev, "/");
		if (!e->ino)
			rv = QFS_ENOMEM;
		else
			fs_kv_stat(fs, &kv, e->ino, true, &e->attr);
	}
	server_unlock(fs->srv);
	return rv == 0 ? 0 : rv == QFS_ENOMEM ? rv : QFS_ENOENT;
}

int ctl_lookup(struct fs *fs, uint64_t parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = e->entry_timeout = fs->cfg->attr_timeout;
	if (parent == NODE_CTL_REV)
		return rev_lookup(fs, name, e);
	if (parent == NODE_CTL_LEASES) {
		char *end;
		uint64_t id = strtoull(name, &end, 16);

		if (*end || !id || id > FS_LEASE_ID_MASK)
			return QFS_ENOENT;
		e->ino = NODE_LEASE_BIT | id;
		e->attr_timeout = e->entry_timeout = 0; /* it goes when the lease does */
		return ctl_stat(fs, e->ino, &e->attr);
	}
	for (size_t i = 0; i < NENTRIES; i++) {
		if (entries[i].parent == parent && strcmp(entries[i].name, name) == 0) {
			e->ino = entries[i].nodeid;
			return ctl_stat(fs, e->ino, &e->attr);
		}
	}
	return QFS_ENOENT;
}

static int status_text(struct fs *fs, char *buf, size_t cap)
{
	struct server_status st;

	server_status(fs->srv, &st);
	return snprintf(buf, cap,
			"{\"name\":\"%s\",\"id\":\"%016" PRIx64 "\",\"role\":\"%s\",\"leader\":\"%s\","
			"\"term\":%" PRIu64 ",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64
			",\"revision\":%" PRIu64 ",\"compacted_revision\":%" PRIu64
			",\"db_size\":%" PRIu64 ",\"quota_bytes\":%" PRIu64 ",\"keys\":%" PRIu64
			",\"snapshot_index\":%" PRIu64 ",\"consistency\":\"%s\"}\n",
			st.name, st.member_id, st.role, st.leader_name, st.term, st.commit_index,
			st.applied_index, st.revision, st.compacted_revision, st.db_size,
			st.quota_bytes, st.keys, st.snapshot_index,
			fs->cfg->consistency == CONSISTENCY_SERIALIZABLE ? "serializable"
									  : "linearizable");
}

static int members_text(struct fs *fs, char *buf, size_t cap)
{
	struct server_member m[SERVER_MEMBERS_MAX];
	size_t n = server_members(fs->srv, m, SERVER_MEMBERS_MAX);
	int used = 0;

	for (size_t i = 0; i < n && used >= 0 && (size_t)used < cap; i++)
		used += snprintf(buf + used, cap - (size_t)used, "%s %016" PRIx64 " %s%s %s %s\n",
				 m[i].name[0] ? m[i].name : "?", m[i].id,
				 m[i].voter ? "voter" : "learner", m[i].leader ? ",leader" : "",
				 m[i].peer_addr[0] ? m[i].peer_addr : "-",
				 m[i].client_addr[0] ? m[i].client_addr : "-");
	return used < (int)cap ? used : (int)cap - 1;
}

static int metrics_open(struct fs *fs, uint64_t nodeid, struct handle **out)
{
	struct handle *h = fs_handle_new(nodeid, 0, NULL);
	struct qbuf page;

	if (!h)
		return QFS_ENOMEM;
	qbuf_init(&page);
	metrics_page(fs->srv, &page);
	if (qbuf_error(&page)) {
		qbuf_close(&page);
		fs_handle_free(fs, h);
		return QFS_ENOMEM;
	}
	h->text = qbuf_take(&page, &h->text_len);
	*out = h;
	return 0;
}

int ctl_open(struct fs *fs, uint64_t nodeid, struct handle **out)
{
	char buf[4096];
	struct handle *h;
	int n;

	if (nodeid & NODE_LEASE_BIT) {
		char *text;
		size_t len;
		int rv = fs_lease_text(fs, nodeid & FS_LEASE_ID_MASK, &text, &len);

		if (rv)
			return rv;
		if (!(h = fs_handle_new(nodeid, 0, NULL))) {
			free(text);
			return QFS_ENOMEM;
		}
		h->text = (uint8_t *)text;
		h->text_len = len;
		*out = h;
		return 0;
	}
	if (nodeid == NODE_CTL_METRICS)
		return metrics_open(fs, nodeid, out);
	if (nodeid == NODE_CTL_STATUS)
		n = status_text(fs, buf, sizeof(buf));
	else if (nodeid == NODE_CTL_MEMBERS)
		n = members_text(fs, buf, sizeof(buf));
	else
		return QFS_EISDIR;
	h = fs_handle_new(nodeid, 0, NULL);
	if (!h || !(h->text = malloc((size_t)n + 1))) {
		fs_handle_free(fs, h);
		return QFS_ENOMEM;
	}
	memcpy(h->text, buf, (size_t)n);
	h->text_len = (size_t)n;
	*out = h;
	return 0;
}

struct lease_names {
	uint64_t *ids;
	size_t n, cap;
};

static int add_lease_name(void *arg, const struct store_lease *l)
{
	struct lease_names *ln = arg;

	if (ln->n == ln->cap) {
		size_t cap = ln->cap ? ln->cap * 2 : 64;
		uint64_t *grown = realloc(ln->ids, cap * sizeof(*grown));

		if (!grown)
			return 1;
		ln->ids = grown;
		ln->cap = cap;
	}
	ln->ids[ln->n++] = l->id;
	return 0;
}

void ctl_readdir(struct fs *fs, fuse_req_t req, uint64_t nodeid, size_t size, off_t off)
{
	char *buf = malloc(size), name[32];
	size_t used = 0;
	off_t i = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
/* Adds entry number i if at or past off; stops when the buffer is full. */
#define ADD(n, ino_, mode_)                                                                   \
	do {                                                                                   \
		struct stat st_ = {.st_ino = (ino_), .st_mode = (mode_)};                       \
		size_t need_ = fuse_add_direntry(req, NULL, 0, (n), NULL, 0);                   \
		if (i++ < off)                                                                  \
			break;                                                                  \
		if (used + need_ > size)                                                        \
			goto reply;                                                             \
		fuse_add_direntry(req, buf + used, size - used, (n), &st_, i);                  \
		used += need_;                                                                  \
	} while (0)

	ADD(".", nodeid, S_IFDIR);
	ADD("..", nodeid, S_IFDIR);
	if (nodeid == NODE_CTL_DIR) {
		for (size_t k = 1; k < NENTRIES; k++)
			ADD(entries[k].name, entries[k].nodeid,
			    entries[k].dir ? S_IFDIR : S_IFREG);
	} else if (nodeid == NODE_CTL_LEASES) {
		struct lease_names ln = {0};

		server_rdlock(fs->srv);
		store_lease_list(server_store(fs->srv), add_lease_name, &ln);
		server_unlock(fs->srv);
		for (size_t k = 0; k < ln.n; k++) {
			snprintf(name, sizeof(name), "%" PRIx64, ln.ids[k]);
			ADD(name, NODE_LEASE_BIT | ln.ids[k], S_IFREG);
		}
		free(ln.ids);
	} else if (nodeid == NODE_CTL_REV) {
		struct server_status st;
		uint64_t first;

		server_status(fs->srv, &st);
		first = st.revision > REV_LISTED ? st.revision - REV_LISTED + 1 : 1;
		if (first < st.compacted_revision)
			first = st.compacted_revision;
		for (uint64_t r = first; r <= st.revision; r++) {
			snprintf(name, sizeof(name), "%" PRIu64, r);
			ADD(name, NODE_REV_BIT, S_IFDIR);
		}
	}
#undef ADD
reply:
	fuse_reply_buf(req, buf, used);
	free(buf);
}
