/*
 * What the offline commands (snapshot restore, check, dump-wal) share:
 * reading a snapshot or backup file whole, as a member would load it
 * (verified, decoded, its store loaded into a scratch store), and opening
 * a data dir for reading under the shared lock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "cli_impl.h"
#include "datadir.h"

static int count_lease(void *arg, const struct store_lease *l)
{
	(void)l;
	(*(uint64_t *)arg)++;
	return 0;
}

int cli_image_load(const char *path, struct cli_image *ci, char *err, size_t errlen)
{
	struct store_config cfg = {0, 0}; /* no limits: it held this before */
	struct store *st = NULL;
	int rv;

	memset(ci, 0, sizeof(*ci));
	raft_dedup_init(&ci->img.dedup);
	err[0] = '\0';
	rv = snapfile_read(path, &ci->info, &ci->raw, &ci->raw_len, err, errlen);
	if (rv)
		return rv;
	rv = image_decode(ci->raw, ci->raw_len, &ci->img);
	if (rv) {
		snprintf(err, errlen, "%s: the image in it does not decode (%s)", path,
			 qfs_strerror(rv));
		return rv == QFS_EMSG ? QFS_ECORRUPT : rv;
	}
	rv = store_create(&cfg, &st);
	if (!rv)
		rv = store_snapshot_load(st, ci->img.store, ci->img.store_len);
	if (rv) {
		snprintf(err, errlen, "%s: the store in it does not load (%s)", path,
			 qfs_strerror(rv));
		store_destroy(st);
		return rv == QFS_EMSG ? QFS_ECORRUPT : rv;
	}
	if (store_applied_index(st) != ci->info.index) {
		snprintf(err, errlen,
			 "%s: the store was applied up to index %" PRIu64
			 " but the file says index %" PRIu64,
			 path, store_applied_index(st), ci->info.index);
		store_destroy(st);
		return QFS_ECORRUPT;
	}
	ci->revision = store_revision(st);
	ci->compacted = store_compacted_revision(st);
	ci->keys = store_key_count(st);
	store_lease_list(st, count_lease, &ci->leases);
	store_destroy(st);
	return 0;
}

void cli_image_close(struct cli_image *ci)
{
	image_close(&ci->img);
	free(ci->raw);
	ci->raw = NULL;
}

const char *cli_image_member_name(const struct cli_image *ci, uint64_t id, char *buf, size_t len)
{
	const struct book_entry *e = ci ? book_find(&ci->img.book, id) : NULL;

	if (e && e->name[0])
		return e->name;
	snprintf(buf, len, "%016" PRIx64, id);
	return buf;
}

int cli_datadir_open(const struct cli *c, const char *dir, bool live_ok, int *fd)
{
	char err[4400];
	int rv = datadir_lock_shared(dir, fd, err, sizeof(err));

	if (rv == QFS_EBUSY && live_ok) {
		fprintf(stderr,
			"quorumfs: %s: warning: a member is running on %s: its last records may "
			"still be being written\n",
			c->what, dir);
		return 0;
	}
	if (rv == QFS_EBUSY)
		return cli_fail(c,
				"%s: stop the member first (a WAL being written can look "
				"damaged)",
				err);
	if (rv)
		return cli_fail(c, "%s", err);
	return 0;
}
