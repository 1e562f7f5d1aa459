/* Users and roles: see auth.h. Sorted arrays; lookups are binary searches. */
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "auth.h"

void auth_init(struct auth *a)
{
	memset(a, 0, sizeof(*a));
}

void auth_close(struct auth *a)
{
	free(a->users);
	free(a->roles);
	auth_init(a);
}

/* ---- names, prefixes, permissions -------------------------------------- */

int auth_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > AUTH_NAME_MAX || name[0] == ' ' || name[n - 1] == ' ')
		return QFS_EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e)
			return QFS_EINVAL;
	return 0;
}

int auth_prefix_check(const char *prefix)
{
	return strlen(prefix) <= AUTH_PREFIX_MAX && store_key_check(prefix) == 0 ? 0 : QFS_EINVAL;
}

bool auth_covers(const char *prefix, const char *key)
{
	size_t n = strlen(prefix);

	if (strcmp(prefix, "/") == 0)
		return true;
	return strncmp(prefix, key, n) == 0 && (key[n] == '\0' || key[n] == '/');
}

const char *auth_perm_name(uint8_t perm)
{
	return perm == AUTH_READ ? "read" : perm == AUTH_READWRITE ? "readwrite" : "?";
}

const char *auth_op_name(uint8_t op)
{
	static const char *names[] = {
	    "?",
	    "user add",
	    "user delete",
	    "user grant-role",
	    "user revoke-role",
	    "role add",
	    "role delete",
	    "role grant-permission",
	    "role revoke-permission",
	    "auth enable",
	    "auth disable",
	};

	return op <= AUTH_OP_MAX_ ? names[op] : "?";
}

int auth_perm_parse(const char *s, uint8_t *perm)
{
	if (strcmp(s, "read") == 0)
		*perm = AUTH_READ;
	else if (strcmp(s, "readwrite") == 0)
		*perm = AUTH_READWRITE;
	else
		return QFS_EINVAL;
	return 0;
}

/* ---- lookups ------------------------------------------------------------- */

/* Index of name in a sorted array of n elements of size sz, each with a
 * name string at base's offset in it: found (*at its index) or not (*at
 * where it goes). */
static bool search(const void *base, uint32_t n, size_t sz, const char *name, uint32_t *at)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp((const char *)base + (size_t)mid * sz, name);

		if (c == 0) {
			*at = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return false;
}

const struct auth_user *auth_user_find(const struct auth *a, const char *name)
{
	uint32_t i;

	return search(a->users, a->nusers, sizeof(*a->users), name, &i) ? &a->users[i] : NULL;
}

const struct auth_role *auth_role_find(const struct auth *a, const char *name)
{
	uint32_t i;

	return search(a->roles, a->nroles, sizeof(*a->roles), name, &i) ? &a->roles[i] : NULL;
}

static bool user_has(const struct auth_user *u, const char *role, uint32_t *at)
{
	return search(u->roles, u->nroles, sizeof(u->roles[0]), role, at);
}

static bool role_grant_find(const struct auth_role *r, const char *prefix, uint32_t *at)
{
	/* The grants are sorted by prefix, which sits after perm. */
	return search((const char *)r->perms + offsetof(struct auth_grant, prefix), r->nperms,
		      sizeof(r->perms[0]), prefix, at);
}

bool auth_is_root(const struct auth *a, const char *user)
{
	const struct auth_user *u = auth_user_find(a, user);
	uint32_t i;

	return u && user_has(u, AUTH_ROOT, &i);
}

/* ---- changes ------------------------------------------------------------- */

#define FAIL(code, ...)                                                                            \
	do {                                                                                       \
		snprintf(msg, len, __VA_ARGS__);                                                   \
		return code;                                                                       \
	} while (0)

static int check_user(const struct auth *a, const struct auth_change *ch, char *msg, size_t len)
{
	const struct auth_user *u = auth_user_find(a, ch->name);
	bool root = strcmp(ch->name, AUTH_ROOT) == 0;
	uint32_t i;

	if (auth_name_check(ch->name))
		FAIL(QFS_EINVAL, "bad user name '%.*s': 1 to %d printable ASCII characters",
		     AUTH_NAME_MAX + 8, ch->name, AUTH_NAME_MAX);
	if (ch->op == AUTH_USER_ADD) {
		if (u)
			FAIL(QFS_EEXIST, "user %s already exists", ch->name);
		if (a->nusers >= AUTH_USERS_MAX)
			FAIL(QFS_ENOSPC, "there are already %d users, the most allowed",
			     AUTH_USERS_MAX);
		return 0;
	}
	if (!u)
		FAIL(QFS_ENOENT, "no user %s", ch->name);
	if (ch->op == AUTH_USER_DELETE) {
		if (root && a->enabled)
			FAIL(QFS_EPERM, "user root cannot be deleted while auth is enabled");
		return 0;
	}
	if (auth_name_check(ch->arg))
		FAIL(QFS_EINVAL, "bad role name '%.*s'", AUTH_NAME_MAX + 8, ch->arg);
	if (ch->op == AUTH_USER_GRANT) {
		if (strcmp(ch->arg, AUTH_ROOT) != 0 && !auth_role_find(a, ch->arg))
			FAIL(QFS_ENOENT, "no role %s", ch->arg);
		if (user_has(u, ch->arg, &i))
			FAIL(QFS_EEXIST, "user %s already has role %s", ch->name, ch->arg);
		if (u->nroles >= AUTH_USER_ROLES_MAX)
			FAIL(QFS_ENOSPC, "user %s already has %d roles, the most allowed", ch->name,
			     AUTH_USER_ROLES_MAX);
		return 0;
	}
	if (!user_has(u, ch->arg, &i))
		FAIL(QFS_ENOENT, "user %s does not have role %s", ch->name, ch->arg);
	if (root && strcmp(ch->arg, AUTH_ROOT) == 0 && a->enabled)
		FAIL(QFS_EPERM, "user root keeps role root while auth is enabled");
	return 0;
}

static int check_role(const struct auth *a, const struct auth_change *ch, char *msg, size_t len)
{
	const struct auth_role *r = auth_role_find(a, ch->name);
	uint32_t i;

	if (auth_name_check(ch->name))
		FAIL(QFS_EINVAL, "bad role name '%.*s': 1 to %d printable ASCII characters",
		     AUTH_NAME_MAX + 8, ch->name, AUTH_NAME_MAX);
	if (strcmp(ch->name, AUTH_ROOT) == 0)
		FAIL(QFS_EPERM, "role root is built in: it grants everything and cannot change");
	if (ch->op == AUTH_ROLE_ADD) {
		if (r)
			FAIL(QFS_EEXIST, "role %s already exists", ch->name);
		if (a->nroles >= AUTH_ROLES_MAX)
			FAIL(QFS_ENOSPC, "there are already %d roles, the most allowed",
			     AUTH_ROLES_MAX);
		return 0;
	}
	if (!r)
		FAIL(QFS_ENOENT, "no role %s", ch->name);
	if (ch->op == AUTH_ROLE_DELETE)
		return 0;
	if (auth_prefix_check(ch->arg))
		FAIL(QFS_EINVAL,
		     "bad prefix '%.200s': a key (absolute, no empty, '.' or '..' components, "
		     "no trailing '/', not under " STORE_RESERVED_PREFIX ") of at most %d bytes",
		     ch->arg, AUTH_PREFIX_MAX);
	if (ch->op == AUTH_ROLE_GRANT) {
		if (ch->perm != AUTH_READ && ch->perm != AUTH_READWRITE)
			FAIL(QFS_EINVAL, "a permission is read or readwrite");
		if (!role_grant_find(r, ch->arg, &i) && r->nperms >= AUTH_ROLE_PERMS_MAX)
			FAIL(QFS_ENOSPC, "role %s already has %d permissions, the most allowed",
			     ch->name, AUTH_ROLE_PERMS_MAX);
		return 0;
	}
	if (!role_grant_find(r, ch->arg, &i))
		FAIL(QFS_ENOENT, "role %s grants nothing on %.200s", ch->name, ch->arg);
	return 0;
}

int auth_change_check(const struct auth *a, const struct auth_change *ch, char *msg, size_t len)
{
	msg[0] = 0;
	switch (ch->op) {
	case AUTH_USER_ADD:
	case AUTH_USER_DELETE:
	case AUTH_USER_GRANT:
	case AUTH_USER_REVOKE:
		return check_user(a, ch, msg, len);
	case AUTH_ROLE_ADD:
	case AUTH_ROLE_DELETE:
	case AUTH_ROLE_GRANT:
	case AUTH_ROLE_REVOKE:
		return check_role(a, ch, msg, len);
	case AUTH_ENABLE:
		if (!auth_is_root(a, AUTH_ROOT))
			FAIL(QFS_EPERM,
			     "auth enable needs a user root with role root first "
			     "(quorumfs user add root; quorumfs user grant-role root root)");
		return 0;
	case AUTH_DISABLE:
		return 0;
	}
	FAIL(QFS_EINVAL, "unknown auth change %u", ch->op);
}

/* Makes room for one more element in *arr of n elements. */
static int grow(void **arr, uint32_t n, size_t sz)
{
	void *p = realloc(*arr, ((size_t)n + 1) * sz);

	if (!p)
		return QFS_ENOMEM;
	*arr = p;
	return 0;
}

/* Inserts (zeroed) or removes element i of a sorted array of n. */
static void *insert_at(void *base, uint32_t n, size_t sz, uint32_t i)
{
	char *p = (char *)base + (size_t)i * sz;

	memmove(p + sz, p, (size_t)(n - i) * sz);
	memset(p, 0, sz);
	return p;
}

static void remove_at(void *base, uint32_t n, size_t sz, uint32_t i)
{
	char *p = (char *)base + (size_t)i * sz;

	memmove(p, p + sz, (size_t)(n - i - 1) * sz);
}

static void user_revoke(struct auth_user *u, const char *role)
{
	uint32_t i;

	if (user_has(u, role, &i))
		remove_at(u->roles, u->nroles--, sizeof(u->roles[0]), i);
}

int auth_apply(struct auth *a, const struct auth_change *ch)
{
	char msg[8];
	uint32_t i, j;
	int rv = auth_change_check(a, ch, msg, sizeof(msg));
	struct auth_user *u;
	struct auth_role *r;

	if (rv)
		return rv;
	switch (ch->op) {
	case AUTH_USER_ADD:
		if ((rv = grow((void **)&a->users, a->nusers, sizeof(*a->users))) != 0)
			return rv;
		search(a->users, a->nusers, sizeof(*a->users), ch->name, &i);
		u = insert_at(a->users, a->nusers++, sizeof(*u), i);
		strcpy(u->name, ch->name);
		break;
	case AUTH_USER_DELETE:
		search(a->users, a->nusers, sizeof(*a->users), ch->name, &i);
		remove_at(a->users, a->nusers--, sizeof(*a->users), i);
		break;
	case AUTH_USER_GRANT:
		u = (struct auth_user *)auth_user_find(a, ch->name);
		user_has(u, ch->arg, &j);
		insert_at(u->roles, u->nroles++, sizeof(u->roles[0]), j);
		strcpy(u->roles[j], ch->arg);
		break;
	case AUTH_USER_REVOKE:
		user_revoke((struct auth_user *)auth_user_find(a, ch->name), ch->arg);
		break;
	case AUTH_ROLE_ADD:
		if ((rv = grow((void **)&a->roles, a->nroles, sizeof(*a->roles))) != 0)
			return rv;
		search(a->roles, a->nroles, sizeof(*a->roles), ch->name, &i);
		r = insert_at(a->roles, a->nroles++, sizeof(*r), i);
		strcpy(r->name, ch->name);
		break;
	case AUTH_ROLE_DELETE:
		for (i = 0; i < a->nusers; i++)
			user_revoke(&a->users[i], ch->name);
		search(a->roles, a->nroles, sizeof(*a->roles), ch->name, &i);
		remove_at(a->roles, a->nroles--, sizeof(*a->roles), i);
		break;
	case AUTH_ROLE_GRANT:
		r = (struct auth_role *)auth_role_find(a, ch->name);
		if (!role_grant_find(r, ch->arg, &j)) {
			insert_at(r->perms, r->nperms++, sizeof(r->perms[0]), j);
			strcpy(r->perms[j].prefix, ch->arg);
		}
		r->perms[j].perm = ch->perm;
		break;
	case AUTH_ROLE_REVOKE:
		r = (struct auth_role *)auth_role_find(a, ch->name);
		role_grant_find(r, ch->arg, &j);
		remove_at(r->perms, r->nperms--, sizeof(r->perms[0]), j);
		break;
	case AUTH_ENABLE:
		a->enabled = true;
		break;
	case AUTH_DISABLE:
		a->enabled = false;
		break;
	}
	return 0;
}

/* ---- checks -------------------------------------------------------------- */

int auth_check(const struct auth *a, const char *user, const char *key, bool subtree, uint8_t want,
	       char *msg, size_t len)
{
	const struct auth_user *u = auth_user_find(a, user);
	const char *verb = want == AUTH_READ ? "read" : "write";
	const char *under = subtree ? " and what is under it" : "";
	const struct auth_role *weak_role = NULL;
	const char *weak_prefix = NULL;

	if (!u)
		FAIL(QFS_EDENIED, "user %s does not exist (auth is enabled)", user);
	for (uint32_t i = 0; i < u->nroles; i++) {
		const struct auth_role *r;

		if (strcmp(u->roles[i], AUTH_ROOT) == 0)
			return 0;
		if (!(r = auth_role_find(a, u->roles[i])))
			continue;
		for (uint32_t j = 0; j < r->nperms; j++) {
			if (!auth_covers(r->perms[j].prefix, key))
				continue;
			if (r->perms[j].perm >= want)
				return 0;
			weak_role = r;
			weak_prefix = r->perms[j].prefix;
		}
	}
	if (weak_role)
		FAIL(QFS_EDENIED, "user %s may not write %.300s%s (role %s grants read on %.300s)",
		     user, key, under, weak_role->name, weak_prefix);
	if (u->nroles == 0)
		FAIL(QFS_EDENIED, "user %s may not %s %.300s%s (the user has no roles)", user, verb,
		     key, under);
	FAIL(QFS_EDENIED,
	     "user %s may not %s %.300s%s (no role of the user grants %s on a prefix "
	     "covering it)",
	     user, verb, key, under, want == AUTH_READ ? "read" : "readwrite");
}

/* ---- encoding ------------------------------------------------------------ */

static void put_text(struct qbuf *out, const char *s)
{
	qbuf_put_bytes(out, s, strlen(s));
}

void auth_encode(const struct auth *a, struct qbuf *out)
{
	qbuf_put_u8(out, a->enabled);
	qbuf_put_u32(out, a->nusers);
	for (uint32_t i = 0; i < a->nusers; i++) {
		const struct auth_user *u = &a->users[i];

		put_text(out, u->name);
		qbuf_put_u32(out, u->nroles);
		for (uint32_t j = 0; j < u->nroles; j++)
			put_text(out, u->roles[j]);
	}
	qbuf_put_u32(out, a->nroles);
	for (uint32_t i = 0; i < a->nroles; i++) {
		const struct auth_role *r = &a->roles[i];

		put_text(out, r->name);
		qbuf_put_u32(out, r->nperms);
		for (uint32_t j = 0; j < r->nperms; j++) {
			qbuf_put_u8(out, r->perms[j].perm);
			put_text(out, r->perms[j].prefix);
		}
	}
}

/* A string of at most max bytes into out (max + 1 bytes); fails r on
 * anything else. */
static void get_text(struct qreader *r, char *out, size_t max)
{
	size_t n;
	const uint8_t *p = qreader_bytes(r, max, &n);

	out[0] = 0;
	if (!p || memchr(p, 0, n)) {
		r->failed = 1;
		return;
	}
	memcpy(out, p, n);
	out[n] = 0;
}

/* A count of at most max items of at least min_bytes each. */
static uint32_t get_count(struct qreader *r, uint32_t max, size_t min_bytes)
{
	uint32_t n = qreader_u32(r);

	if (r->failed || n > max || n > r->left / min_bytes) {
		r->failed = 1;
		return 0;
	}
	return n;
}

/* The smallest encodings: a one-byte name and no items. */
#define NAME_MIN_BYTES 5
#define ITEM_MIN_BYTES (NAME_MIN_BYTES + 4)
#define GRANT_MIN_BYTES (1 + NAME_MIN_BYTES)

static bool decode_users(struct auth *t, struct qreader *r)
{
	for (uint32_t i = 0; i < t->nusers && !r->failed; i++) {
		struct auth_user *u = &t->users[i];

		get_text(r, u->name, AUTH_NAME_MAX);
		u->nroles = get_count(r, AUTH_USER_ROLES_MAX, NAME_MIN_BYTES);
		if (r->failed || auth_name_check(u->name) ||
		    (i && strcmp(t->users[i - 1].name, u->name) >= 0))
			return false;
		for (uint32_t j = 0; j < u->nroles && !r->failed; j++) {
			get_text(r, u->roles[j], AUTH_NAME_MAX);
			if (auth_name_check(u->roles[j]) ||
			    (j && strcmp(u->roles[j - 1], u->roles[j]) >= 0))
				return false;
		}
	}
	return !r->failed;
}

static bool decode_roles(struct auth *t, struct qreader *r)
{
	for (uint32_t i = 0; i < t->nroles && !r->failed; i++) {
		struct auth_role *o = &t->roles[i];

		get_text(r, o->name, AUTH_NAME_MAX);
		o->nperms = get_count(r, AUTH_ROLE_PERMS_MAX, GRANT_MIN_BYTES);
		if (r->failed || auth_name_check(o->name) || strcmp(o->name, AUTH_ROOT) == 0 ||
		    (i && strcmp(t->roles[i - 1].name, o->name) >= 0))
			return false;
		for (uint32_t j = 0; j < o->nperms && !r->failed; j++) {
			struct auth_grant *g = &o->perms[j];

			g->perm = qreader_u8(r);
			get_text(r, g->prefix, AUTH_PREFIX_MAX);
			if (r->failed || (g->perm != AUTH_READ && g->perm != AUTH_READWRITE) ||
			    auth_prefix_check(g->prefix) ||
			    (j && strcmp(o->perms[j - 1].prefix, g->prefix) >= 0))
				return false;
		}
	}
	return !r->failed;
}

/* Every role a user has exists, and enabled needs root. */
static bool consistent(const struct auth *t)
{
	for (uint32_t i = 0; i < t->nusers; i++)
		for (uint32_t j = 0; j < t->users[i].nroles; j++)
			if (strcmp(t->users[i].roles[j], AUTH_ROOT) != 0 &&
			    !auth_role_find(t, t->users[i].roles[j]))
				return false;
	return !t->enabled || auth_is_root(t, AUTH_ROOT);
}

int auth_decode(struct auth *a, struct qreader *r)
{
	struct auth t;
	uint8_t enabled = qreader_u8(r);
	int rv = QFS_EMSG;

	auth_init(&t);
	t.enabled = enabled == 1;
	t.nusers = get_count(r, AUTH_USERS_MAX, ITEM_MIN_BYTES);
	if (r->failed || enabled > 1)
		goto fail;
	/* Bounded by the count checks above: at most AUTH_USERS_MAX users. */
	if (t.nusers && !(t.users = calloc(t.nusers, sizeof(*t.users)))) {
		rv = QFS_ENOMEM;
		goto fail;
	}
	if (!decode_users(&t, r))
		goto fail;
	t.nroles = get_count(r, AUTH_ROLES_MAX, ITEM_MIN_BYTES);
	if (r->failed)
		goto fail;
	if (t.nroles && !(t.roles = calloc(t.nroles, sizeof(*t.roles)))) {
		rv = QFS_ENOMEM;
		goto fail;
	}
	if (!decode_roles(&t, r) || !consistent(&t))
		goto fail;
	auth_close(a);
	*a = t;
	return 0;
fail:
	r->failed = 1;
	auth_close(&t);
	return rv;
}
