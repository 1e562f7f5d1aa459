/*
 * Mutual TLS streams (see stream_tls.h): OpenSSL over another stream through
 * two memory BIOs. Bytes read from the inner stream are written into the
 * read BIO and OpenSSL is asked for plaintext; whatever OpenSSL puts into
 * the write BIO (handshake records, application records, alerts) is taken
 * out and written to the inner stream. OpenSSL never touches the socket, so
 * it never blocks and libuv keeps the event loop.
 *
 * A stream goes CONNECTING (inner connect pending, connecting side only),
 * HANDSHAKE, CONFIRM (connecting side, TLS 1.3: handshake done, waiting for
 * proof that the server accepted our certificate), then OPEN, or FAILED.
 * All progress is made by pump(), which runs only from the loop (an inner
 * read or connect callback, or the kick timer), never inside a call of the
 * stream's user: that is what keeps callbacks from re-entering. pump() may
 * call user callbacks, and any of them may close the stream, so it checks
 * `closing` after each.
 *
 * Memory: the stream is freed when both its inner stream and its kick timer
 * have closed, after the user's close callback.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "stream_tls.h"
#include "tls_ctx.h"

#define NAME_MAX_LEN 64		/* "[v6 address]:port" */
#define PLAIN_CHUNK (16 * 1024) /* one TLS record's worth of plaintext */
#define REASON_MAX 256
#define RECENT_SLOTS 8
#define RECENT_MS 60000 /* a repeated refusal is logged again after this */

struct stream_tls {
	struct qfs_stream_factory factory;
	const struct qfs_stream_factory *inner;
	SSL_CTX *ctx;
	const char *label;
	/* Refusals logged lately, so a peer retrying every few seconds does
	 * not fill the log. */
	struct {
		char key[INET6_ADDRSTRLEN + REASON_MAX + 16];
		uint64_t at;
	} recent[RECENT_SLOTS];
	unsigned recent_next;
};

enum tls_state { TLS_CONNECTING, TLS_HANDSHAKE, TLS_CONFIRM, TLS_OPEN, TLS_FAILED };

/* A user write waiting for the handshake (the bytes stay the user's). */
struct pending {
	struct pending *next;
	qfs_stream_write_cb cb;
	void *arg;
	unsigned nbufs;
	uv_buf_t bufs[];
};

/* Ciphertext on its way to the inner stream; cb is the user write it
 * carries, if any. */
struct cipher {
	struct tls_stream *ts;
	qfs_stream_write_cb cb;
	void *arg;
	uint8_t data[];
};

struct tls_stream {
	struct qfs_stream base;
	struct stream_tls *tls;
	struct qfs_stream *raw; /* the inner stream */
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	uv_timer_t kick;  /* runs pump() from the loop */
	enum tls_state state;
	bool accepted;
	bool confirmed;	      /* the server sent something after its handshake */
	bool connect_pending; /* connect callback not run yet */
	bool raw_reading, raw_done;
	bool got_bytes; /* the other end sent something */
	bool user_reading, read_done;
	bool closing;
	int handles; /* raw and kick, until their close callbacks */
	qfs_stream_connect_cb connect_cb;
	void *connect_arg;
	qfs_stream_read_cb read_cb;
	void *read_arg;
	qfs_stream_close_cb close_cb;
	void *close_arg;
	struct pending *whead, **wtail;
	char name[NAME_MAX_LEN];
	uint8_t plain[PLAIN_CHUNK];
};

static const struct qfs_stream_ops tls_ops;

/* ---- helpers ------------------------------------------------------------- */

/* Whether this refusal was logged lately; notes it if not. */
static bool refusal_seen(struct tls_stream *ts, const char *reason)
{
	struct stream_tls *t = ts->tls;
	uint64_t now = uv_now(ts->kick.loop);
	char key[sizeof(t->recent[0].key)];
	const char *colon = strrchr(ts->name, ':');
	int iplen = colon ? (int)(colon - ts->name) : (int)strlen(ts->name);

	snprintf(key, sizeof(key), "%.*s %d %s", iplen, ts->name, ts->accepted, reason);
	for (unsigned i = 0; i < RECENT_SLOTS; i++)
		if (t->recent[i].at && now - t->recent[i].at < RECENT_MS &&
		    strcmp(t->recent[i].key, key) == 0)
			return true;
	snprintf(t->recent[t->recent_next].key, sizeof(key), "%s", key);
	t->recent[t->recent_next].at = now ? now : 1;
	t->recent_next = (t->recent_next + 1) % RECENT_SLOTS;
	return false;
}

/* One warning per refusal, but at debug level: the same IP and reason
 * again within RECENT_MS, and an inbound connection that came and went
 * without a byte (a port probe). */
static void log_refusal(struct tls_stream *ts, const char *reason)
{
	bool quiet = (ts->accepted && !ts->got_bytes) || refusal_seen(ts, reason);

	qfs_log(quiet ? QFS_LOG_DEBUG : QFS_LOG_WARN, "%s tls: %s %s: %s", ts->tls->label,
		ts->accepted ? "refused a connection from" : "cannot connect to", ts->name, reason);
}

/* ---- writing ciphertext -------------------------------------------------- */

static void on_cipher_written(struct qfs_stream *raw, void *arg, int status)
{
	struct cipher *c = arg;

	(void)raw;
	if (c->cb)
		c->cb(&c->ts->base, c->arg, status);
	free(c);
}

/* Sends what OpenSSL produced; cb (with arg) is the user write it carries
 * and runs when the inner write completes. */
static int flush(struct tls_stream *ts, qfs_stream_write_cb cb, void *arg)
{
	size_t n = BIO_ctrl_pending(ts->wbio);
	struct cipher *c;
	uv_buf_t buf;
	int rv;

	if (n == 0 && !cb)
		return 0;
	c = malloc(sizeof(*c) + n);
	if (!c)
		return QFS_ENOMEM;
	c->ts = ts;
	c->cb = cb;
	c->arg = arg;
	if (n && BIO_read(ts->wbio, c->data, (int)n) != (int)n) {
		free(c);
		return QFS_EIO;
	}
	buf = uv_buf_init((char *)c->data, (unsigned)n);
	rv = stream_write(ts->raw, &buf, 1, on_cipher_written, c);
	if (rv)
		free(c);
	return rv;
}

/* Encrypts a user write and sends it. On error nothing is queued for it. */
static int write_now(struct tls_stream *ts, const uv_buf_t *bufs, unsigned nbufs,
		     qfs_stream_write_cb cb, void *arg)
{
	ERR_clear_error();
	for (unsigned i = 0; i < nbufs; i++) {
		size_t done;

		if (bufs[i].len && SSL_write_ex(ts->ssl, bufs[i].base, bufs[i].len, &done) != 1) {
			ERR_clear_error();
			flush(ts, NULL, NULL);
			return QFS_EIO;
		}
	}
	return flush(ts, cb, arg);
}

/* ---- progress -------------------------------------------------------------- */

static void on_raw_read(struct qfs_stream *raw, void *arg, const uint8_t *data, size_t len,
			int err);

static void update_raw_reading(struct tls_stream *ts)
{
	bool want = !ts->closing && !ts->raw_done && ts->state != TLS_FAILED &&
		    ts->state != TLS_CONNECTING && (ts->state != TLS_OPEN || ts->user_reading);

	if (want == ts->raw_reading)
		return;
	if (!want) {
		stream_read_stop(ts->raw);
		ts->raw_reading = false;
		return;
	}
	ts->raw_reading = stream_read_start(ts->raw, on_raw_read, ts) == 0;
}

static void call_connect(struct tls_stream *ts, int status)
{
	if (!ts->connect_pending)
		return;
	ts->connect_pending = false;
	ts->connect_cb(&ts->base, ts->connect_arg, status);
}

/* Fails the writes that waited for the handshake. */
static void fail_pending(struct tls_stream *ts, int status)
{
	while (ts->whead) {
		struct pending *p = ts->whead;

		ts->whead = p->next;
		if (!ts->whead)
			ts->wtail = &ts->whead;
		p->cb(&ts->base, p->arg, status);
		free(p);
	}
}

static void end_reads(struct tls_stream *ts)
{
	if (ts->read_done || !ts->user_reading)
		return;
	ts->read_done = true;
	ts->read_cb(&ts->base, ts->read_arg, NULL, 0, QFS_EIO);
}

static void fail(struct tls_stream *ts)
{
	char reason[REASON_MAX];

	tls_ctx_failure(ts->ssl, reason, sizeof(reason));
	ts->state = TLS_FAILED;
	log_refusal(ts, reason);
	flush(ts, NULL, NULL); /* the alert telling the other end why */
	call_connect(ts, QFS_EIO);
	if (ts->closing)
		return;
	fail_pending(ts, QFS_EIO);
	if (!ts->closing)
		end_reads(ts);
}

static void on_open(struct tls_stream *ts)
{
	char cn[128];

	ts->state = TLS_OPEN;
	if (stream_peer_name(&ts->base, cn, sizeof(cn)) != 0)
		snprintf(cn, sizeof(cn), "?");
	LOG_DEBUG("%s tls: %s %s, %s, CN=%s", ts->tls->label,
		  ts->accepted ? "accepted" : "connected to", ts->name, SSL_get_version(ts->ssl),
		  cn);
	call_connect(ts, 0);
	/* Writes made before the handshake ended go out in order; a write
	 * made by one of their callbacks queues behind the rest. */
	while (ts->whead && !ts->closing) {
		struct pending *p = ts->whead;
		int rv;

		ts->whead = p->next;
		if (!ts->whead)
			ts->wtail = &ts->whead;
		rv = write_now(ts, p->bufs, p->nbufs, p->cb, p->arg);
		if (rv)
			p->cb(&ts->base, p->arg, rv);
		free(p);
	}
}

static void handshake_step(struct tls_stream *ts)
{
	int rv, err;

	ERR_clear_error();
	rv = SSL_do_handshake(ts->ssl);
	err = SSL_get_error(ts->ssl, rv);
	if (rv != 1 && err == SSL_ERROR_WANT_READ && !ts->raw_done) {
		if (flush(ts, NULL, NULL) != 0)
			fail(ts);
		return;
	}
	if (rv != 1) {
		fail(ts);
		return;
	}
	if (flush(ts, NULL, NULL) != 0) {
		fail(ts);
		return;
	}
	if (!ts->accepted && SSL_version(ts->ssl) >= TLS1_3_VERSION && !ts->confirmed)
		ts->state = TLS_CONFIRM;
	else
		on_open(ts);
}

/* TLS 1.3, connecting side: the server checks our certificate after our
 * handshake ended. Anything it sends afterwards (a session ticket, seen by
 * tls_ctx_confirm(), or data) means it accepted it; an alert means it did not. */
static void confirm_step(struct tls_stream *ts)
{
	uint8_t byte;
	int rv, err;

	ERR_clear_error();
	rv = SSL_peek(ts->ssl, &byte, 1);
	err = SSL_get_error(ts->ssl, rv);
	if (rv > 0 || ts->confirmed) {
		ERR_clear_error();
		on_open(ts);
		return;
	}
	if (err == SSL_ERROR_WANT_READ && !ts->raw_done)
		return;
	fail(ts);
}

static void deliver(struct tls_stream *ts)
{
	while (ts->user_reading && !ts->read_done && !ts->closing) {
		size_t n = 0;
		int rv, err;

		ERR_clear_error();
		rv = SSL_read_ex(ts->ssl, ts->plain, sizeof(ts->plain), &n);
		if (rv == 1) {
			ts->read_cb(&ts->base, ts->read_arg, ts->plain, n, 0);
			continue;
		}
		err = SSL_get_error(ts->ssl, rv);
		flush(ts, NULL, NULL); /* e.g. the answer to a key update */
		if (err == SSL_ERROR_WANT_READ && !ts->raw_done)
			return;
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_ZERO_RETURN) {
			char reason[REASON_MAX];

			tls_ctx_failure(ts->ssl, reason, sizeof(reason));
			LOG_DEBUG("%s tls: connection with %s: %s", ts->tls->label, ts->name,
				  reason);
		}
		ERR_clear_error();
		end_reads(ts);
	}
}

static void pump(struct tls_stream *ts)
{
	if (!ts->closing && ts->state == TLS_HANDSHAKE)
		handshake_step(ts);
	if (!ts->closing && ts->state == TLS_CONFIRM)
		confirm_step(ts);
	if (!ts->closing && ts->state == TLS_OPEN)
		deliver(ts);
	if (!ts->closing && ts->state == TLS_FAILED && !ts->whead)
		end_reads(ts);
	update_raw_reading(ts);
}

static void on_kick(uv_timer_t *h)
{
	pump(h->data);
}

static void on_raw_read(struct qfs_stream *raw, void *arg, const uint8_t *data, size_t len, int err)
{
	struct tls_stream *ts = arg;

	(void)raw;
	if (ts->closing)
		return;
	if (err) {
		ts->raw_done = true;
		ts->raw_reading = false;
	} else if (len > 0) {
		ts->got_bytes = true;
		if (ts->state != TLS_FAILED && BIO_write(ts->rbio, data, (int)len) != (int)len)
			ts->raw_done = true; /* cannot keep it: treat as the end */
	}
	pump(ts);
}

/* ---- stream operations ---------------------------------------------------- */

static int tls_read_start(struct qfs_stream *s, qfs_stream_read_cb cb, void *arg)
{
	struct tls_stream *ts = (struct tls_stream *)s;

	if (ts->closing)
		return QFS_ESHUTDOWN;
	ts->read_cb = cb;
	ts->read_arg = arg;
	ts->user_reading = true;
	/* Something may wait already (plaintext OpenSSL holds, ciphertext not
	 * yet decrypted, an end or a failure): deliver it from the loop. */
	if (ts->state == TLS_FAILED || ts->raw_done || SSL_has_pending(ts->ssl) ||
	    BIO_ctrl_pending(ts->rbio) > 0)
		uv_timer_start(&ts->kick, on_kick, 0, 0);
	update_raw_reading(ts);
	return 0;
}

static void tls_read_stop(struct qfs_stream *s)
{
	struct tls_stream *ts = (struct tls_stream *)s;

	ts->user_reading = false;
	if (!ts->closing)
		update_raw_reading(ts);
}

static int tls_write(struct qfs_stream *s, const uv_buf_t *bufs, unsigned nbufs,
		     qfs_stream_write_cb cb, void *arg)
{
	struct tls_stream *ts = (struct tls_stream *)s;
	struct pending *p;
	size_t total = 0;

	if (ts->closing)
		return QFS_ESHUTDOWN;
	if (ts->state == TLS_FAILED)
		return QFS_EIO;
	for (unsigned i = 0; i < nbufs; i++)
		total += bufs[i].len;
	if (total == 0)
		return QFS_EINVAL; /* no record to carry its callback */
	if (ts->state == TLS_OPEN && !ts->whead)
		return write_now(ts, bufs, nbufs, cb, arg);
	p = malloc(sizeof(*p) + nbufs * sizeof(uv_buf_t));
	if (!p)
		return QFS_ENOMEM;
	p->next = NULL;
	p->cb = cb;
	p->arg = arg;
	p->nbufs = nbufs;
	memcpy(p->bufs, bufs, nbufs * sizeof(uv_buf_t));
	*ts->wtail = p;
	ts->wtail = &p->next;
	return 0;
}

static void stream_free(struct tls_stream *ts)
{
	SSL_free(ts->ssl);
	free(ts);
}

static void handle_closed(struct tls_stream *ts)
{
	if (--ts->handles > 0)
		return;
	if (ts->close_cb)
		ts->close_cb(&ts->base, ts->close_arg);
	stream_free(ts);
}

static void on_kick_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

/* The inner stream's write callbacks (the user writes it carried) have run. */
static void on_raw_closed(struct qfs_stream *raw, void *arg)
{
	struct tls_stream *ts = arg;

	(void)raw;
	call_connect(ts, QFS_ESHUTDOWN);
	fail_pending(ts, QFS_ESHUTDOWN);
	handle_closed(ts);
}

static void tls_close(struct qfs_stream *s, qfs_stream_close_cb cb, void *arg)
{
	struct tls_stream *ts = (struct tls_stream *)s;

	ts->closing = true;
	ts->close_cb = cb;
	ts->close_arg = arg;
	if (ts->state == TLS_OPEN) {
		/* Best effort close_notify: it goes if the socket takes it at
		 * once; the framing above does not depend on it. */
		ERR_clear_error();
		if (SSL_shutdown(ts->ssl) < 0)
			ERR_clear_error();
		flush(ts, NULL, NULL);
	}
	uv_timer_stop(&ts->kick);
	uv_close((uv_handle_t *)&ts->kick, on_kick_closed);
	stream_close(ts->raw, on_raw_closed, ts);
}

static int tls_peer_addr(struct qfs_stream *s, struct sockaddr_storage *out)
{
	struct tls_stream *ts = (struct tls_stream *)s;

	return stream_peer_addr(ts->raw, out);
}

/* The CN of the verified peer certificate (stream.h: peer_name). */
static int tls_peer_name(struct qfs_stream *s, char *buf, size_t len)
{
	struct tls_stream *ts = (struct tls_stream *)s;
	X509_NAME *subject;
	X509 *cert;
	int n;

	if (ts->state != TLS_OPEN || len == 0)
		return QFS_ENOENT;
	cert = SSL_get0_peer_certificate(ts->ssl);
	if (!cert)
		return QFS_ENOENT;
	subject = X509_get_subject_name(cert);
	/* The length first: OpenSSL would truncate silently. */
	n = X509_NAME_get_text_by_NID(subject, NID_commonName, NULL, 0);
	if (n > 0 && (size_t)n >= len) {
		ERR_clear_error();
		return QFS_ERANGE;
	}
	if (n > 0)
		n = X509_NAME_get_text_by_NID(subject, NID_commonName, buf, (int)len);
	ERR_clear_error();
	if (n <= 0)
		return QFS_ENOENT;
	/* A CN with a NUL in it names nobody. */
	if (strlen(buf) != (size_t)n)
		return QFS_ENOENT;
	return 0;
}

static void tls_unref(struct qfs_stream *s)
{
	struct tls_stream *ts = (struct tls_stream *)s;

	uv_unref((uv_handle_t *)&ts->kick);
	stream_unref(ts->raw);
}

static const struct qfs_stream_ops tls_ops = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .close = tls_close,
    .peer_addr = tls_peer_addr,
    .peer_name = tls_peer_name,
    .unref = tls_unref,
};

/* ---- the factory ------------------------------------------------------------ */

static void on_unused_kick_closed(uv_handle_t *h)
{
	stream_free(h->data);
}

/* A stream with its SSL and kick timer, no inner stream yet. */
static struct tls_stream *stream_new(struct stream_tls *t, uv_loop_t *loop, bool accepted)
{
	struct tls_stream *ts = calloc(1, sizeof(*ts));

	if (!ts)
		return NULL;
	ts->ssl = SSL_new(t->ctx);
	ts->rbio = BIO_new(BIO_s_mem());
	ts->wbio = BIO_new(BIO_s_mem());
	if (!ts->ssl || !ts->rbio || !ts->wbio || !tls_ctx_confirm(ts->ssl, &ts->confirmed)) {
		BIO_free(ts->rbio);
		BIO_free(ts->wbio);
		SSL_free(ts->ssl);
		free(ts);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_bio(ts->ssl, ts->rbio, ts->wbio);
	if (accepted)
		SSL_set_accept_state(ts->ssl);
	else
		SSL_set_connect_state(ts->ssl);
	ts->base.ops = &tls_ops;
	ts->tls = t;
	ts->accepted = accepted;
	ts->wtail = &ts->whead;
	ts->handles = 2;
	uv_timer_init(loop, &ts->kick);
	ts->kick.data = ts;
	snprintf(ts->name, sizeof(ts->name), "?");
	return ts;
}

static void on_raw_connected(struct qfs_stream *raw, void *arg, int status)
{
	struct tls_stream *ts = arg;

	(void)raw;
	if (ts->closing) {
		call_connect(ts, QFS_ESHUTDOWN);
		return;
	}
	if (status) {
		call_connect(ts, status);
		return;
	}
	ts->state = TLS_HANDSHAKE;
	pump(ts); /* sends the ClientHello and starts reading */
}

/* Server certificates must name the address we dialled. */
static int expect_ip(SSL *ssl, const struct sockaddr *addr)
{
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	const void *ip = NULL;
	size_t len = 0;

	if (addr->sa_family == AF_INET) {
		ip = &((const struct sockaddr_in *)addr)->sin_addr;
		len = 4;
	} else if (addr->sa_family == AF_INET6) {
		ip = &((const struct sockaddr_in6 *)addr)->sin6_addr;
		len = 16;
	}
	return ip ? X509_VERIFY_PARAM_set1_ip(param, ip, len) : 0;
}

static int tls_connect(void *ctx, uv_loop_t *loop, const struct sockaddr *local,
		       const struct sockaddr *addr, qfs_stream_connect_cb cb, void *arg,
		       struct qfs_stream **out)
{
	struct stream_tls *t = ctx;
	struct tls_stream *ts = stream_new(t, loop, false);
	int rv;

	if (!ts)
		return QFS_ENOMEM;
	stream_addr_name(addr, ts->name, sizeof(ts->name));
	if (expect_ip(ts->ssl, addr) != 1) {
		ERR_clear_error();
		rv = QFS_EINVAL;
		goto fail;
	}
	ts->state = TLS_CONNECTING;
	ts->connect_cb = cb;
	ts->connect_arg = arg;
	ts->connect_pending = true;
	rv = t->inner->connect(t->inner->ctx, loop, local, addr, on_raw_connected, ts, &ts->raw);
	if (rv)
		goto fail;
	*out = &ts->base;
	return 0;

fail:
	uv_close((uv_handle_t *)&ts->kick, on_unused_kick_closed);
	return rv;
}

static int tls_accept(void *ctx, uv_stream_t *server, struct qfs_stream **out)
{
	struct stream_tls *t = ctx;
	struct sockaddr_storage ss;
	struct qfs_stream *raw;
	struct tls_stream *ts;
	int rv;

	rv = t->inner->accept(t->inner->ctx, server, &raw);
	if (rv)
		return rv;
	ts = stream_new(t, server->loop, true);
	if (!ts) {
		stream_close(raw, NULL, NULL);
		return QFS_ENOMEM;
	}
	ts->raw = raw;
	ts->state = TLS_HANDSHAKE;
	if (stream_peer_addr(raw, &ss) == 0)
		stream_addr_name((const struct sockaddr *)&ss, ts->name, sizeof(ts->name));
	/* The handshake runs whether or not the user reads yet. */
	update_raw_reading(ts);
	*out = &ts->base;
	return 0;
}

/* ---- the context -------------------------------------------------------------- */

int stream_tls_create(const struct stream_tls_config *cfg, struct stream_tls **out)
{
	char cert_flag[64], key_flag[64], ca_flag[64], err[1024];
	struct tls_ctx_files files = {cfg->cert_file, cfg->key_file, cfg->ca_file,
				      cert_flag,      key_flag,	     ca_flag};
	struct stream_tls *t = calloc(1, sizeof(*t));

	if (!t)
		return QFS_ENOMEM;
	snprintf(cert_flag, sizeof(cert_flag), "--%s-cert", cfg->label);
	snprintf(key_flag, sizeof(key_flag), "--%s-key", cfg->label);
	snprintf(ca_flag, sizeof(ca_flag), "--%s-ca", cfg->label);
	t->ctx = tls_ctx_new(&files, err, sizeof(err));
	if (!t->ctx) {
		LOG_ERROR("%s", err);
		free(t);
		return QFS_EINVAL;
	}
	t->label = cfg->label;
	t->inner = cfg->inner ? cfg->inner : stream_tcp_factory();
	t->factory.connect = tls_connect;
	t->factory.accept = tls_accept;
	t->factory.ctx = t;
	*out = t;
	return 0;
}

const struct qfs_stream_factory *stream_tls_factory(struct stream_tls *t)
{
	return &t->factory;
}

void stream_tls_destroy(struct stream_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}
