/*
 * Leases through the filesystem (SPEC 3.4, 3.5):
 *   setfattr -n user.quorumfs.ttl -v 10 F   grant a 10 s lease and attach F
 *                                           (the same ttl again: renew it)
 *   setfattr -n user.quorumfs.lease -v ID F attach F to lease ID (hex)
 *   setfattr -x user.quorumfs.lease F       detach
 *   getfattr: user.quorumfs.lease (hex id), user.quorumfs.ttl (seconds left)
 *   /.quorumfs/leases/ID                    JSON; touch renews, rm revokes
 * Every change is one transaction; the store keeps the leases (store.h) and
 * the leader's lease keeper expires them (server.c).
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

#define XATTR_TTL "user.quorumfs.ttl"
#define XATTR_LEASE "user.quorumfs.lease"

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Seconds left, rounded up (a lease with 0.2 s left has not expired). */
static int64_t seconds_left(const struct store_lease *l)
{
	int64_t left = l->expiry_ns - now_ns();

	return left <= 0 ? 0 : (left + 999999999) / 1000000000;
}

int fs_lease_xattr_get(struct fs *fs, const struct store_kv *kv, const char *name, char *out,
		       size_t cap)
{
	struct store_lease l;

	if (!kv->lease)
		return QFS_ENODATA;
	if (strcmp(name, XATTR_LEASE) == 0) {
		snprintf(out, cap, "%" PRIx64, kv->lease);
		return 0;
	}
	if (strcmp(name, XATTR_TTL) == 0 && store_lease_get(server_store(fs->srv), kv->lease, &l) == 0) {
		snprintf(out, cap, "%" PRId64, seconds_left(&l));
		return 0;
	}
	return QFS_ENODATA;
}

bool fs_lease_xattr(const char *name)
{
	return strcmp(name, XATTR_TTL) == 0 || strcmp(name, XATTR_LEASE) == 0;
}

/* Parses a ttl in seconds ("10", "2.5") into ms, checking the minimum. */
static int parse_ttl(struct fs *fs, const char *value, size_t len, int64_t *ms)
{
	char buf[32], *end;
	double sec;
	int64_t min = server_lease_min_ttl_ms(fs->srv);

	if (len == 0 || len >= sizeof(buf))
		return QFS_EINVAL;
	memcpy(buf, value, len);
	buf[len] = 0;
	sec = strtod(buf, &end);
	while (*end == '\n' || *end == ' ')
		end++;
	if (*end || !(sec > 0) || sec * 1000 > (double)STORE_LEASE_TTL_MAX_MS)
		return QFS_EINVAL;
	*ms = (int64_t)(sec * 1000);
	if (*ms < min) {
		LOG_INFO("%s: a ttl of %s s is below the minimum of %" PRId64 " ms "
			 "(1.5 x --election-ms)", XATTR_TTL, buf, min);
		return QFS_EINVAL;
	}
	return 0;
}

int fs_lease_xattr_set(struct fs *fs, const char *key, const char *name, const char *value,
		       size_t len, bool remove, struct store_op *ops, size_t *n)
{
	struct store_kv kv;
	struct store_lease l;
	char buf[32], *end;
	int64_t ttl;
	int rv;

	if (remove) { /* detaching; removing the ttl also ends the attachment */
		ops[(*n)++] = (struct store_op){.type = STORE_OP_LEASE_ATTACH, .key = key};
		return 0;
	}
	if (strcmp(name, XATTR_LEASE) == 0) {
		if (len == 0 || len >= sizeof(buf))
			return QFS_EINVAL;
		memcpy(buf, value, len);
		buf[len] = 0;
		ops[*n] = (struct store_op){.type = STORE_OP_LEASE_ATTACH, .key = key,
					    .lease_id = strtoull(buf, &end, 16)};
		if (*end && *end != '\n')
			return QFS_EINVAL;
		(*n)++;
		return 0;
	}
	if ((rv = parse_ttl(fs, value, len, &ttl)))
		return rv;
	server_rdlock(fs->srv);
	rv = store_get(server_store(fs->srv), key, 0, &kv);
	if (rv == 0 && kv.lease && store_lease_get(server_store(fs->srv), kv.lease, &l) == 0 &&
	    l.ttl_ms == ttl) {
		ops[(*n)++] = (struct store_op){.type = STORE_OP_LEASE_RENEW, .lease_id = kv.lease};
	} else if (rv == 0 || rv == QFS_ENOENT) {
		uint64_t id = server_lease_id_new();

		ops[(*n)++] =
		    (struct store_op){.type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = ttl};
		ops[(*n)++] = (struct store_op){.type = STORE_OP_LEASE_ATTACH, .key = key, .lease_id = id};
		rv = 0;
	}
	server_unlock(fs->srv);
	return rv;
}

/* ---- /.quorumfs/leases -------------------------------------------------------- */

int fs_lease_text(struct fs *fs, uint64_t id, char **text, size_t *len)
{
	struct store *s = server_store(fs->srv);
	struct store_lease l;
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	server_rdlock(fs->srv);
	rv = store_lease_get(s, id, &l);
	if (rv == 0) {
		char head[256];
		int n = snprintf(head, sizeof(head),
				 "{\"id\":\"%" PRIx64 "\",\"ttl\":%.3f,\"remaining\":%" PRId64
				 ",\"keys\":[",
				 l.id, (double)l.ttl_ms / 1000, seconds_left(&l));

		qbuf_put(&b, head, (size_t)n);
		rv = store_lease_keys(s, id, fs_json_key, &b);
		qbuf_put(&b, "]}\n", 3);
	}
	server_unlock(fs->srv);
	if (rv == 0 && !(rv = qbuf_error(&b))) {
		qbuf_put(&b, "", 1); /* NUL, not counted */
		*text = (char *)qbuf_take(&b, len);
		(*len)--;
	}
	qbuf_close(&b);
	return rv;
}

int fs_json_key(void *arg, const char *key)
{
	struct qbuf *b = arg;

	if (b->len && b->data[b->len - 1] != '[')
		qbuf_put(b, ",", 1);
	qbuf_put(b, "\"", 1);
	for (const char *p = key; *p; p++) {
		char esc[8];

		if (*p == '"' || *p == '\\') {
			qbuf_put(b, "\\", 1);
			qbuf_put(b, p, 1);
		} else if ((unsigned char)*p < 0x20) {
			qbuf_put(b, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p));
		} else {
			qbuf_put(b, p, 1);
		}
	}
	qbuf_put(b, "\"", 1);
	return 0;
}
