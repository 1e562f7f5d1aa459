/*
 * The shared OpenSSL context (see tls_ctx.h): settings, loading the
 * certificate, key and CA files with an error line that names the flag and
 * the file, the session-ticket confirmation, and failure reasons.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls_ctx.h"

static int confirm_index = -1; /* SSL ex_data slot: the flag to set */

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	bool *flag = confirm_index >= 0 ? SSL_get_ex_data(ssl, confirm_index) : NULL;

	(void)sess;
	if (flag)
		*flag = true;
	return 0; /* the session is not kept */
}

int tls_ctx_confirm(SSL *ssl, bool *flag)
{
	return SSL_set_ex_data(ssl, confirm_index, flag);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0; /* an encrypted key fails to load instead of prompting */
}

/* "FLAG FILE: msg: OpenSSL reason" (the first error queued is the most
 * specific); empties the queue. */
static void load_error(char *err, size_t errlen, const char *flag, const char *file,
		       const char *msg)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s %s: %s%s%s", flag, file, msg, r ? ": " : "", r ? r : "");
	ERR_clear_error();
}

static int readable(const char *flag, const char *file, char *err, size_t errlen)
{
	FILE *f = fopen(file, "r");

	if (!f) {
		snprintf(err, errlen, "%s %s: %s", flag, file, strerror(errno));
		return 0;
	}
	fclose(f);
	return 1;
}

static int load(SSL_CTX *ctx, const struct tls_ctx_files *f, char *err, size_t errlen)
{
	if (!readable(f->ca_flag, f->ca, err, errlen) ||
	    (f->cert && !readable(f->cert_flag, f->cert, err, errlen)) ||
	    (f->key && !readable(f->key_flag, f->key, err, errlen)))
		return 0;
	if (SSL_CTX_load_verify_locations(ctx, f->ca, NULL) != 1) {
		load_error(err, errlen, f->ca_flag, f->ca, "no usable CA certificate");
		return 0;
	}
	if (!f->cert)
		return 1;
	if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
		load_error(err, errlen, f->cert_flag, f->cert, "no usable certificate");
		return 0;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) == 1 &&
	    SSL_CTX_check_private_key(ctx) == 1)
		return 1;
	if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH) {
		snprintf(err, errlen, "%s %s does not match the certificate in %s %s", f->key_flag,
			 f->key, f->cert_flag, f->cert);
		ERR_clear_error();
	} else {
		load_error(err, errlen, f->key_flag, f->key,
			   "no usable private key (PEM, not encrypted)");
	}
	return 0;
}

SSL_CTX *tls_ctx_new(const struct tls_ctx_files *f, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "quorumfs";
	SSL_CTX *ctx;

	if (confirm_index < 0)
		confirm_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx = confirm_index >= 0 ? SSL_CTX_new(TLS_method()) : NULL;
	if (!ctx) {
		snprintf(err, errlen, "cannot set up TLS: out of memory");
		ERR_clear_error();
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_default_passwd_cb(ctx, no_password);
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (!load(ctx, f, err, errlen)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_ctx_failure(SSL *ssl, char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();
	long vr = SSL_get_verify_result(ssl);
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	int reason = e ? ERR_GET_REASON(e) : 0;
	size_t n;

	if (e && !r)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", r ? r : "connection closed during the TLS handshake");
	n = strlen(buf);
	if (vr != X509_V_OK && (!e || reason == SSL_R_CERTIFICATE_VERIFY_FAILED))
		snprintf(buf + n, len - n, " (%s)", X509_verify_cert_error_string(vr));
	else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
		 reason == SSL_R_HTTP_REQUEST)
		snprintf(buf + n, len - n, " (the other end does not speak TLS)");
	ERR_clear_error();
}
