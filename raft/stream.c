/*
 * What every stream implementation and user shares beyond the table of
 * operations in stream.h: naming a remote address in log lines.
 */
#include <netinet/in.h>
#include <stdio.h>

#include "stream.h"

void stream_addr_name(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

		uv_ip6_name(a, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		uv_ip4_name(a, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
	} else {
		snprintf(buf, len, "?");
	}
}
