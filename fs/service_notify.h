/*
 * Readiness for a service manager: systemd's Type=notify passes a unix
 * datagram socket in NOTIFY_SOCKET and waits for "READY=1" on it.
 */
#ifndef QFS_FS_SERVICE_NOTIFY_H
#define QFS_FS_SERVICE_NOTIFY_H

/* Sends state ("READY=1", ...) when NOTIFY_SOCKET is set, then unsets it
 * so children do not inherit it. 0, or QFS_EINVAL (a bad address) or
 * QFS_EIO (the send failed). */
int service_notify(const char *state);

#endif
