/*
 * TLS for the CLI's connections (see client_tls.h): the shared context of
 * raft/tls_ctx.h on the CLI's non-blocking socket, one OpenSSL call per
 * step. client.c does the waiting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../raft/tls_ctx.h"
#include "client_tls.h"

struct client_tls {
	SSL_CTX *ctx;
};

struct client_tls_conn {
	SSL *ssl;
	bool confirmed; /* the member sent something after its handshake */
};

int client_tls_create(const char *cacert, const char *cert, const char *key,
		      struct client_tls **out, char *err, size_t errlen)
{
	struct tls_ctx_files f = {cert, key, cacert, "--cert", "--key", "--cacert"};
	struct client_tls *t;

	if (!cacert || !cert != !key) {
		snprintf(err, errlen, "%s",
			 !cacert ? "--cert and --key need --cacert"
				 : "--cert and --key go together");
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->ctx = tls_ctx_new(&f, err, errlen);
	if (!t->ctx) {
		free(t);
		return -1;
	}
	*out = t;
	return 0;
}

void client_tls_destroy(struct client_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

struct client_tls_conn *client_tls_conn_new(struct client_tls *t, int fd, const char *host,
					    char *err, size_t errlen)
{
	struct client_tls_conn *c = calloc(1, sizeof(*c));
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

	if (!c || !(c->ssl = SSL_new(t->ctx)) || SSL_set_fd(c->ssl, fd) != 1 ||
	    !tls_ctx_confirm(c->ssl, &c->confirmed))
		goto fail;
	/* The member's certificate must name what we dialled. */
	if (is_ip
		? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1
		: (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1))
		goto fail;
	SSL_set_connect_state(c->ssl);
	return c;

fail:
	snprintf(err, errlen, "cannot set up TLS for %s", host);
	ERR_clear_error();
	client_tls_conn_free(c);
	return NULL;
}

void client_tls_conn_free(struct client_tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

/* What an OpenSSL call that returned rv wants, or why it failed. */
static enum client_tls_step outcome(struct client_tls_conn *c, int rv, char *err, size_t errlen)
{
	switch (SSL_get_error(c->ssl, rv)) {
	case SSL_ERROR_WANT_READ:
		return CLIENT_TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return CLIENT_TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return CLIENT_TLS_EOF;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) { /* the socket failed, not TLS */
			snprintf(err, errlen, "%s", errno ? strerror(errno) : "connection closed");
			return CLIENT_TLS_FAILED;
		}
		/* fall through */
	default:
		tls_ctx_failure(c->ssl, err, errlen);
		return CLIENT_TLS_FAILED;
	}
}

enum client_tls_step client_tls_handshake(struct client_tls_conn *c, char *err, size_t errlen)
{
	enum client_tls_step st;
	uint8_t byte;
	int rv;

	ERR_clear_error();
	if (!SSL_is_init_finished(c->ssl)) {
		rv = SSL_do_handshake(c->ssl);
		if (rv != 1)
			return outcome(c, rv, err, errlen);
	}
	if (SSL_version(c->ssl) < TLS1_3_VERSION || c->confirmed)
		return CLIENT_TLS_DONE;
	/* TLS 1.3: wait for the member's ticket (or its refusal). */
	rv = SSL_peek(c->ssl, &byte, 1);
	if (rv > 0 || c->confirmed) {
		ERR_clear_error();
		return CLIENT_TLS_DONE;
	}
	st = outcome(c, rv, err, errlen);
	if (st == CLIENT_TLS_EOF) {
		snprintf(err, errlen, "connection closed during the TLS handshake");
		return CLIENT_TLS_FAILED;
	}
	return st;
}

enum client_tls_step client_tls_read(struct client_tls_conn *c, void *p, size_t len, size_t *got,
				     char *err, size_t errlen)
{
	int rv;

	ERR_clear_error();
	rv = SSL_read_ex(c->ssl, p, len, got);
	return rv == 1 ? CLIENT_TLS_DONE : outcome(c, rv, err, errlen);
}

enum client_tls_step client_tls_write(struct client_tls_conn *c, const void *p, size_t len,
				      size_t *put, char *err, size_t errlen)
{
	int rv;

	ERR_clear_error();
	rv = SSL_write_ex(c->ssl, p, len, put);
	return rv == 1 ? CLIENT_TLS_DONE : outcome(c, rv, err, errlen);
}

bool client_tls_pending(const struct client_tls_conn *c)
{
	return SSL_has_pending(c->ssl) == 1;
}
