/* The sd_notify protocol, which is one datagram of KEY=VALUE lines: no
 * library needed for it. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/errors.h"
#include "service_notify.h"

int service_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n;
	int fd, rv = 0;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	/* A path, or '@' for a name in the abstract namespace. */
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		rv = QFS_EINVAL;
	} else {
		memcpy(sa.sun_path, path, n);
		if (sa.sun_path[0] == '@')
			sa.sun_path[0] = '\0';
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
				     offsetof(struct sockaddr_un, sun_path) + n) < 0)
			rv = QFS_EIO;
		if (fd >= 0)
			close(fd);
	}
	unsetenv("NOTIFY_SOCKET");
	return rv;
}
