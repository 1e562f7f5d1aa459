/*
 * The OpenSSL setup every quorumfs TLS endpoint shares: members towards
 * each other (stream_tls.c), the client port, and the CLI (fs/client_tls.c).
 * One context serves both roles: TLS 1.2 at least, the other side's
 * certificate required and verified against the CA file, one session ticket
 * sent by servers and none kept by clients (sessions are never resumed, so
 * every connection checks certificates).
 *
 * The ticket is how a client learns that the server accepted its
 * certificate: in TLS 1.3 the client's handshake ends before the server has
 * checked it, and the server sends its ticket only after. tls_ctx_confirm()
 * points OpenSSL at a flag it sets when the ticket arrives.
 */
#ifndef QFS_TLS_CTX_H
#define QFS_TLS_CTX_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct tls_ctx_files {
	/* PEM files. cert and key may both be NULL (a client without a
	 * certificate; the other side will refuse it). */
	const char *cert, *key, *ca;
	/* How the command line names them, for error lines ("--peer-cert"). */
	const char *cert_flag, *key_flag, *ca_flag;
};

/* A context with the files loaded and the key checked against the
 * certificate; NULL with one line in err naming the flag and the file. An
 * encrypted key is refused, never prompted for. */
SSL_CTX *tls_ctx_new(const struct tls_ctx_files *f, char *err, size_t errlen);

/* Sets *flag when the server's session ticket arrives on ssl (a client of
 * a tls_ctx_new() context). flag must outlive ssl. Returns 1, or 0 when out
 * of memory. */
int tls_ctx_confirm(SSL *ssl, bool *flag);

/* OpenSSL's reason for the failure at hand on ssl: its error queue, the
 * certificate verification result, a hint when the other end does not
 * speak TLS. Empties the thread's error queue. */
void tls_ctx_failure(SSL *ssl, char *buf, size_t len);

#endif
