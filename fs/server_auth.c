/*
 * Users and roles on the member (auth.h): an applied ENTRY_AUTH changes
 * srv->auth, the same way on every member, in log order; the state goes
 * into every image with the rest (server_image.c) and comes back with it
 * (server_image_load). The client port reads it on this thread
 * (server_auth()) to decide each request (client_auth.c).
 */
#include <stdlib.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "server_impl.h"

int server_auth_entry_apply(struct server *srv, const struct raft_entry *e)
{
	struct auth_change ch;
	struct entry *a;
	int rv;

	if (entry_decode(e->data, e->len, &a) != 0)
		return QFS_EMSG; /* the proposer encoded it: nothing applies */
	ch = (struct auth_change){a->auth.op, a->auth.name, a->auth.arg, a->auth.perm};
	rv = auth_apply(&srv->auth, &ch);
	free(a);
	if (rv == QFS_ENOMEM) {
		LOG_ERROR("out of memory applying users and roles at entry %llu",
			  (unsigned long long)e->index);
		abort(); /* members must not diverge */
	}
	if (rv == 0)
		LOG_INFO("%s%s%s%s%s%s%s (entry %llu)", auth_op_name(ch.op), ch.name[0] ? " " : "",
			 ch.name, ch.op == AUTH_ROLE_GRANT ? " " : "",
			 ch.op == AUTH_ROLE_GRANT ? auth_perm_name(ch.perm) : "",
			 ch.arg[0] ? " " : "", ch.arg, (unsigned long long)e->index);
	return rv;
}

const struct auth *server_auth(struct server *srv)
{
	return &srv->auth;
}
