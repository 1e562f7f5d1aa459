/*
 * Changes made through other members reach this one as applied entries, not
 * through its kernel: the kernel may still cache the old names, attributes
 * and pages. For every key a remote transaction touched, drop the kernel's
 * dentry (so a lookup sees creates, deletes and renames) and the inode's
 * attributes and pages (so a read sees the new size and bytes). The notify
 * calls run on the invalidation thread (inval.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

/* Drops the dentry of key and, if the key exists now, its inode's caches.
 * Runs on the loop thread: it reads the store without a lock. */
static void forget_key(struct fs *fs, const char *key)
{
	struct store *s = server_store(fs->srv);
	const char *slash = strrchr(key, '/');
	char parent[STORE_KEY_MAX + 1];
	struct store_kv kv;

	if (!slash || !slash[1])
		return;
	snprintf(parent, sizeof(parent), "%.*s", slash == key ? 1 : (int)(slash - key), key);
	if (store_get(s, key, 0, &kv) == 0)
		inval_inode(fs->inval, kv.ino, 1, NULL, 0);
	if (store_get(s, parent, 0, &kv) == 0) {
		inval_inode(fs->inval, kv.ino, 0, NULL, 0); /* its size, mtime */
		inval_entry(fs->inval, kv.ino, slash + 1);
	}
}

void fs_remote_applied(void *arg, const uint8_t *data, size_t len, const struct store_result *res)
{
	struct fs *fs = arg;
	const struct store_op *ops;
	struct entry *e;
	size_t n;

	if (res->err || !fs->inval || entry_decode(data, len, &e) != 0)
		return;
	ops = res->succeeded ? e->txn.then_ops : e->txn.else_ops;
	n = res->succeeded ? e->txn.nthen : e->txn.nelse;
	for (size_t i = 0; i < n; i++) {
		forget_key(fs, ops[i].key);
		if (ops[i].dst)
			forget_key(fs, ops[i].dst);
	}
	free(e);
}
