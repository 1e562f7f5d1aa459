/*
 * Users and roles (SPEC §6): who may do what on the client port.
 * Replicated state, like the address book: it changes only when an
 * ENTRY_AUTH is applied (auth_apply, the same on every member) and is
 * saved in state machine images (fs/image.h), so every member decides
 * alike. The FUSE mount does not use it (the kernel checks mode, uid, gid).
 *
 *   users: name -> set of role names (a TLS client's certificate CN is
 *          its user name)
 *   roles: name -> list of (key prefix, read | readwrite)
 *   enabled: whether the client port checks anything at all
 *
 * The role `root` is built in: it is never added, deleted or given
 * permissions, and grants everything, administration included. Auth can
 * be enabled only while a user named root has it, and then that user
 * keeps it (neither deleted nor revoked) until auth is disabled.
 *
 * A prefix P covers a key K when P is "/", K is P, or K starts with P
 * followed by '/': "/a" covers "/a" and "/a/b" but not "/ab". A request
 * on K's whole subtree (--prefix) needs a prefix covering K, which then
 * covers all of the subtree.
 *
 * Everything is bounded (AUTH_*_MAX) and kept sorted by name (users,
 * roles, a user's roles) or by prefix (a role's permissions), so the
 * encoding of a state is one byte string and the decoder can refuse
 * duplicates by order alone. Pure: no locks; the member's loop thread
 * owns its copy (server.c), the CLI decodes one to print it.
 */
#ifndef QFS_AUTH_H
#define QFS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"

#define AUTH_NAME_MAX 64     /* bytes in a user or role name (a CN has at most 64) */
#define AUTH_PREFIX_MAX 1024 /* bytes in a permission's prefix */
#define AUTH_USERS_MAX 1024
#define AUTH_ROLES_MAX 256
#define AUTH_USER_ROLES_MAX 16
#define AUTH_ROLE_PERMS_MAX 32
#define AUTH_ROOT "root" /* the built-in role, and the user auth enable needs */

enum auth_perm { AUTH_READ = 1, AUTH_READWRITE = 2 };

/* Changes (an ENTRY_AUTH's op). name and arg per op:
 *   USER_ADD/DELETE name;  USER_GRANT/REVOKE name, arg = role;
 *   ROLE_ADD/DELETE name;  ROLE_GRANT name, arg = prefix, perm;
 *   ROLE_REVOKE name, arg = prefix;  ENABLE, DISABLE: neither. */
enum auth_op {
	AUTH_USER_ADD = 1,
	AUTH_USER_DELETE,
	AUTH_USER_GRANT,
	AUTH_USER_REVOKE,
	AUTH_ROLE_ADD,
	AUTH_ROLE_DELETE,
	AUTH_ROLE_GRANT,
	AUTH_ROLE_REVOKE,
	AUTH_ENABLE,
	AUTH_DISABLE,
	AUTH_OP_MAX_ = AUTH_DISABLE,
};

struct auth_change {
	uint8_t op;		/* enum auth_op */
	const char *name, *arg; /* "" when the op takes none; never NULL */
	uint8_t perm;		/* ROLE_GRANT: enum auth_perm; else 0 */
};

struct auth_grant {
	uint8_t perm; /* enum auth_perm */
	char prefix[AUTH_PREFIX_MAX + 1];
};

struct auth_role {
	char name[AUTH_NAME_MAX + 1];
	uint32_t nperms;
	struct auth_grant perms[AUTH_ROLE_PERMS_MAX]; /* by prefix */
};

struct auth_user {
	char name[AUTH_NAME_MAX + 1];
	uint32_t nroles;
	char roles[AUTH_USER_ROLES_MAX][AUTH_NAME_MAX + 1]; /* sorted */
};

/* Caller-allocated; the arrays are owned (auth_close). All zero is a valid
 * empty, disabled state. */
struct auth {
	bool enabled;
	struct auth_user *users; /* by name */
	uint32_t nusers;
	struct auth_role *roles; /* by name; never "root" */
	uint32_t nroles;
};

void auth_init(struct auth *a);
void auth_close(struct auth *a);

/* 0 if name may be a user or role name: 1..AUTH_NAME_MAX printable ASCII
 * bytes (space allowed inside), else QFS_EINVAL. */
int auth_name_check(const char *name);
/* 0 if prefix may be granted: a valid key (store_key_check) of at most
 * AUTH_PREFIX_MAX bytes, else QFS_EINVAL. */
int auth_prefix_check(const char *prefix);
/* Whether prefix covers key (see the top of this file). */
bool auth_covers(const char *prefix, const char *key);
/* "read" or "readwrite" (or "?"); and back: 0 or QFS_EINVAL. */
const char *auth_perm_name(uint8_t perm);
/* The command that makes op: "user add", ..., "auth disable" (or "?"). */
const char *auth_op_name(uint8_t op);
int auth_perm_parse(const char *s, uint8_t *perm);

const struct auth_user *auth_user_find(const struct auth *a, const char *name);
const struct auth_role *auth_role_find(const struct auth *a, const char *name);
/* Whether user exists and has the role root. */
bool auth_is_root(const struct auth *a, const char *user);

/*
 * Whether ch would apply to a: 0, or why not as a QFS_E* code with one line
 * in msg: QFS_EINVAL (bad op, name, prefix or perm), QFS_EEXIST (already
 * there), QFS_ENOENT (no such user, role, or role or grant to revoke),
 * QFS_ENOSPC (a bound is reached), QFS_EPERM (the root role or user's rules
 * above). A failed change applies as nothing, so after one, this gives the
 * same answer again.
 */
int auth_change_check(const struct auth *a, const struct auth_change *ch, char *msg, size_t len);
/* Applies ch: auth_change_check's result, with a changed only on 0. Also
 * QFS_ENOMEM (a unchanged): the caller must not go on diverging. A
 * repeated ENABLE/DISABLE or a ROLE_GRANT giving a prefix's grant again is
 * 0; ROLE_DELETE also revokes the role from every user. */
int auth_apply(struct auth *a, const struct auth_change *ch);

/*
 * Whether user may have want (READ or READWRITE) on key (with subtree: on
 * key and everything under it), enabled or not: 0, or QFS_EDENIED with a
 * line in msg naming the user, the key and what is missing.
 */
int auth_check(const struct auth *a, const char *user, const char *key, bool subtree, uint8_t want,
	       char *msg, size_t len);

/*
 *   u8 enabled | u32 n users, each: bytes name, u32 k, k x bytes role |
 *   u32 n roles, each: bytes name, u32 k, k x (u8 perm, bytes prefix)
 */
void auth_encode(const struct auth *a, struct qbuf *out);
/* Replaces a from untrusted bytes, checking every bound, name, order and
 * reference (a user's role must exist) and the root rule before use:
 * QFS_EMSG or QFS_ENOMEM leave a unchanged. */
int auth_decode(struct auth *a, struct qreader *r);

#endif
