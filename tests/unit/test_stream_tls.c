/*
 * TLS stream tests (raft/stream_tls.h): a test CA, a second unrelated CA and
 * member certificates are made in-process with the OpenSSL API into a temp
 * dir; streams run over real loopback sockets in one uv loop. Each rule of
 * the contract in raft/stream.h is checked: connect only after both sides
 * verified, writes on an accepted stream buffered until the handshake is
 * done, a refused handshake reported as a read error before any byte, no
 * callback inside a call, close cancelling writes with their callbacks.
 * The last tests run the peer transport over TLS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../../common/errors.h"
#include "../../common/log.h"
#include "../../raft/stream_tls.h"
#include "../../raft/transport.h"
#include "loop_fixture.h"

static char dir[] = "/tmp/qfs-tls-test-XXXXXX";

/* ---- certificates ----------------------------------------------------------- */

static char *path(const char *name)
{
	static char buf[8][256];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);

	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (NULL: self-signed CA). */
static X509 *cert_make(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
		       const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509V3_CTX v3;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	add_ext(x, &v3, NID_subject_key_identifier, "hash");
	if (issuer) {
		add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
		add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
		if (san)
			add_ext(x, &v3, NID_subject_alt_name, san);
	} else {
		add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void write_cert(const char *name, X509 *x)
{
	FILE *f = fopen(path(name), "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, const char *password)
{
	FILE *f = fopen(path(name), "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, password ? EVP_aes_128_cbc() : NULL,
					      (unsigned char *)password,
					      password ? (int)strlen(password) : 0, NULL, NULL),
			 1);
	fclose(f);
}

/* NAME.crt and NAME.key, signed by the CA in ca/ca_key. */
static void member_make(const char *name, X509 *ca, EVP_PKEY *ca_key, const char *san)
{
	char file[64];
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x;

	assert_non_null(k);
	x = cert_make(name, k, ca, ca_key, san);
	snprintf(file, sizeof(file), "%s.crt", name);
	write_cert(file, x);
	snprintf(file, sizeof(file), "%s.key", name);
	write_key(file, k, NULL);
	X509_free(x);
	EVP_PKEY_free(k);
}

/*
 * ca.crt: the cluster's CA. other-ca.crt: an unrelated CA.
 * a, b: members of ca (SAN IP 127.0.0.1); x: signed by other-ca;
 * far: of ca but for 127.0.0.9; locked.key: b's key encrypted.
 */
static int group_setup(void **state)
{
	EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *other_key = EVP_EC_gen("P-256");
	X509 *ca, *other;
	FILE *f;

	(void)state;
	if (!mkdtemp(dir) || !ca_key || !other_key)
		return -1;
	ca = cert_make("test ca", ca_key, NULL, NULL, NULL);
	other = cert_make("other ca", other_key, NULL, NULL, NULL);
	write_cert("ca.crt", ca);
	write_cert("other-ca.crt", other);
	member_make("a", ca, ca_key, "IP:127.0.0.1");
	member_make("b", ca, ca_key, "IP:127.0.0.1,IP:::1");
	member_make("x", other, other_key, "IP:127.0.0.1");
	member_make("far", ca, ca_key, "IP:127.0.0.9");
	{
		EVP_PKEY *k = EVP_EC_gen("P-256");

		write_key("locked.key", k, "secret");
		EVP_PKEY_free(k);
	}
	f = fopen(path("garbage.pem"), "w");
	fputs("not a certificate\n", f);
	fclose(f);
	X509_free(ca);
	X509_free(other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A stream_tls presenting NAME.crt and trusting ca_file. */
static struct stream_tls *tls_make(const char *name, const char *ca_file)
{
	struct stream_tls_config cfg = {0};
	struct stream_tls *t = NULL;
	char crt[64], key[64], c[256], k[256];

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	snprintf(c, sizeof(c), "%s", path(crt));
	snprintf(k, sizeof(k), "%s", path(key));
	cfg.cert_file = c;
	cfg.key_file = k;
	cfg.ca_file = path(ca_file);
	cfg.label = "test";
	assert_int_equal(stream_tls_create(&cfg, &t), 0);
	return t;
}

/* ---- stream ends -------------------------------------------------------------- */

/* Set while the test is inside a stream call: a callback then is re-entry. */
static int in_call, reentered;

#define CALL(expr)                                                                                 \
	({                                                                                         \
		int r_;                                                                            \
		in_call++;                                                                         \
		r_ = (expr);                                                                       \
		in_call--;                                                                         \
		r_;                                                                                \
	})

static void check_entry(void)
{
	if (in_call)
		reentered++;
}

struct end {
	struct qfs_stream *s;
	int connects, connect_status;
	uint8_t *got;
	size_t len, cap;
	int read_err, reads_after_err, read_before_connect;
	int writes, write_status[16];
	int closed, events_after_close;
	int close_after_reads; /* closes itself from its read callback after this many bytes */
};

static void on_connect(struct qfs_stream *s, void *arg, int status)
{
	struct end *e = arg;

	(void)s;
	check_entry();
	e->connects++;
	e->connect_status = status;
	e->events_after_close += e->closed;
}

static void on_read(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len, int err)
{
	struct end *e = arg;

	(void)s;
	check_entry();
	e->events_after_close += e->closed;
	if (e->read_err) {
		e->reads_after_err++;
		return;
	}
	if (err) {
		e->read_err = err;
		return;
	}
	if (e->len + len > e->cap) {
		e->cap = (e->len + len) * 2;
		e->got = realloc(e->got, e->cap);
		assert_non_null(e->got);
	}
	memcpy(e->got + e->len, data, len);
	e->len += len;
}

static void on_written(struct qfs_stream *s, void *arg, int status)
{
	struct end *e = arg;

	(void)s;
	check_entry();
	e->events_after_close += e->closed;
	if (e->writes < 16)
		e->write_status[e->writes] = status;
	e->writes++;
}

static void on_closed(struct qfs_stream *s, void *arg)
{
	struct end *e = arg;

	(void)s;
	check_entry();
	e->closed++;
}

static int end_write(struct end *e, const void *p, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);

	return CALL(stream_write(e->s, &b, 1, on_written, e));
}

static void end_read(struct end *e)
{
	assert_int_equal(CALL(stream_read_start(e->s, on_read, e)), 0);
}

static void end_close(struct end *e)
{
	in_call++;
	stream_close(e->s, on_closed, e);
	in_call--;
	WAIT_FOR(e->closed, 2000);
	assert_int_equal(e->closed, 1);
	assert_int_equal(e->events_after_close, 0);
}

static void end_free(struct end *e)
{
	free(e->got);
	memset(e, 0, sizeof(*e));
}

/* ---- a listener accepting through a factory ----------------------------------- */

struct server {
	uv_tcp_t tcp;
	const struct qfs_stream_factory *f;
	struct end ends[4];
	int accepted;
	/* What to do with each accepted stream before the loop runs again. */
	int read_at_once;
	const char *write_at_once;
	int closed;
	uint16_t port; /* network order */
};

static void on_connection(uv_stream_t *h, int status)
{
	struct server *sv = h->data;
	struct end *e;

	assert_int_equal(status, 0);
	assert_true(sv->accepted < 4);
	e = &sv->ends[sv->accepted];
	assert_int_equal(sv->f->accept(sv->f->ctx, h, &e->s), 0);
	sv->accepted++;
	if (sv->write_at_once)
		assert_int_equal(end_write(e, sv->write_at_once, strlen(sv->write_at_once)), 0);
	if (sv->read_at_once)
		end_read(e);
}

static int server_start(struct server *sv, const struct qfs_stream_factory *f)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(sv, 0, sizeof(*sv));
	sv->f = f;
	sv->read_at_once = 1;
	assert_int_equal(uv_tcp_init(&loop, &sv->tcp), 0);
	sv->tcp.data = sv;
	assert_int_equal(transport_addr_parse("127.0.0.1:0", &ss), 0);
	assert_int_equal(uv_tcp_bind(&sv->tcp, (struct sockaddr *)&ss, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&sv->tcp, 16, on_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&sv->tcp, (struct sockaddr *)&ss, &len), 0);
	sv->port = ((struct sockaddr_in *)&ss)->sin_port;
	return ntohs(sv->port);
}

static void on_server_closed(uv_handle_t *h)
{
	((struct server *)h->data)->closed = 1;
}

static void server_stop(struct server *sv)
{
	for (int i = 0; i < sv->accepted; i++) {
		if (!sv->ends[i].closed)
			end_close(&sv->ends[i]);
		end_free(&sv->ends[i]);
	}
	uv_close((uv_handle_t *)&sv->tcp, on_server_closed);
	WAIT_FOR(sv->closed, 2000);
}

static void client_connect(struct end *e, const struct qfs_stream_factory *f, const char *ip,
			   int port)
{
	struct sockaddr_storage ss;
	char addr[64];

	memset(e, 0, sizeof(*e));
	snprintf(addr, sizeof(addr), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
	assert_int_equal(transport_addr_parse(addr, &ss), 0);
	assert_int_equal(
	    CALL(f->connect(f->ctx, &loop, NULL, (struct sockaddr *)&ss, on_connect, e, &e->s)), 0);
}

/* ---- fixtures ----------------------------------------------------------------- */

static int setup(void **state)
{
	in_call = reentered = 0;
	return loop_setup(state);
}

static int teardown(void **state)
{
	int rv = loop_teardown(state);

	assert_int_equal(reentered, 0);
	return rv;
}

/* A server presenting SERVER.crt and a client presenting CLIENT.crt, each
 * trusting its CA file, the client connecting to the server. */
struct pair {
	struct stream_tls *st, *ct;
	struct server sv;
	struct end c;
};

static void pair_open(struct pair *p, const char *server, const char *server_ca, const char *client,
		      const char *client_ca)
{
	int port;

	p->st = tls_make(server, server_ca);
	p->ct = tls_make(client, client_ca);
	port = server_start(&p->sv, stream_tls_factory(p->st));
	client_connect(&p->c, stream_tls_factory(p->ct), "127.0.0.1", port);
}

static void pair_close(struct pair *p)
{
	if (!p->c.closed)
		end_close(&p->c);
	end_free(&p->c);
	server_stop(&p->sv);
	stream_tls_destroy(p->st);
	stream_tls_destroy(p->ct);
}

/* The handshake fails: the client's connect gets an error, the server
 * reads an error and not one byte. */
static void expect_refused(const char *server, const char *server_ca, const char *client,
			   const char *client_ca)
{
	struct pair p;

	pair_open(&p, server, server_ca, client, client_ca);
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(p.c.connect_status, QFS_EIO);
	WAIT_FOR(p.sv.ends[0].read_err == QFS_EIO, 2000);
	assert_int_equal(p.sv.ends[0].len, 0);
	assert_int_equal(end_write(&p.sv.ends[0], "x", 1), QFS_EIO);
	pair_close(&p);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_load_errors(void **state)
{
	struct stream_tls_config cfg = {.label = "peer"};
	struct stream_tls *t = NULL;
	char crt[256], key[256], ca[256];

	(void)state;
	snprintf(crt, sizeof(crt), "%s", path("a.crt"));
	snprintf(key, sizeof(key), "%s", path("a.key"));
	snprintf(ca, sizeof(ca), "%s", path("ca.crt"));
	cfg.cert_file = crt;
	cfg.key_file = key;
	cfg.ca_file = ca;
	assert_int_equal(stream_tls_create(&cfg, &t), 0);
	stream_tls_destroy(t);
	cfg.key_file = path("missing.key");
	assert_int_equal(stream_tls_create(&cfg, &t), QFS_EINVAL);
	cfg.key_file = path("b.key"); /* not a's key */
	assert_int_equal(stream_tls_create(&cfg, &t), QFS_EINVAL);
	cfg.key_file = path("locked.key"); /* encrypted: refused, never prompts */
	assert_int_equal(stream_tls_create(&cfg, &t), QFS_EINVAL);
	cfg.key_file = key;
	cfg.ca_file = path("garbage.pem");
	assert_int_equal(stream_tls_create(&cfg, &t), QFS_EINVAL);
	cfg.ca_file = ca;
	cfg.cert_file = path("garbage.pem");
	assert_int_equal(stream_tls_create(&cfg, &t), QFS_EINVAL);
}

static void test_handshake_and_data(void **state)
{
	size_t big = (3u << 20) + 7;
	uint8_t *blob = malloc(big);
	struct end *sc;
	struct pair p;
	char cn[64];

	(void)state;
	assert_non_null(blob);
	for (size_t i = 0; i < big; i++)
		blob[i] = (uint8_t)(i * 31 + (i >> 9));
	pair_open(&p, "a", "ca.crt", "b", "ca.crt");
	assert_int_equal(p.c.connects, 0);
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(p.c.connect_status, 0);
	assert_int_equal(p.sv.accepted, 1);
	sc = &p.sv.ends[0];
	/* Both ends know who the other is; a name that does not fit is not
	 * cut to a prefix. */
	assert_int_equal(stream_peer_name(p.c.s, cn, sizeof(cn)), 0);
	assert_string_equal(cn, "a");
	assert_int_equal(stream_peer_name(p.c.s, cn, 1), QFS_ERANGE);
	assert_int_equal(stream_peer_name(p.c.s, cn, 2), 0);
	assert_string_equal(cn, "a");
	end_read(&p.c);
	assert_int_equal(end_write(&p.c, "ping", 4), 0);
	assert_int_equal(end_write(&p.c, blob, big), 0);
	assert_int_equal(end_write(&p.c, "", 0), QFS_EINVAL);
	WAIT_FOR(sc->len == 4 + big, 5000);
	assert_memory_equal(sc->got, "ping", 4);
	assert_memory_equal(sc->got + 4, blob, big);
	assert_int_equal(stream_peer_name(sc->s, cn, sizeof(cn)), 0);
	assert_string_equal(cn, "b");
	WAIT_FOR(p.c.writes == 2, 2000);
	assert_int_equal(p.c.write_status[0], 0);
	assert_int_equal(p.c.write_status[1], 0);
	assert_int_equal(end_write(sc, "pong", 4), 0);
	WAIT_FOR(p.c.len == 4, 2000);
	assert_memory_equal(p.c.got, "pong", 4);
	/* Paused reads keep the bytes until reading starts again. */
	in_call++;
	stream_read_stop(p.c.s);
	in_call--;
	assert_int_equal(end_write(sc, "later", 5), 0);
	run_for(50);
	assert_int_equal(p.c.len, 4);
	end_read(&p.c);
	WAIT_FOR(p.c.len == 9, 2000);
	assert_memory_equal(p.c.got + 4, "later", 5);
	/* The client closes: the server reads the end, nothing else. */
	end_close(&p.c);
	WAIT_FOR(sc->read_err == QFS_EIO, 2000);
	assert_int_equal(sc->reads_after_err, 0);
	assert_int_equal(sc->len, 4 + big);
	pair_close(&p);
	free(blob);
}

/* A peer whose certificate is not from our CA is refused, either way. */
static void test_wrong_ca_refused(void **state)
{
	struct pair p;

	(void)state;
	/* x trusts our CA but its certificate is from another one. A write
	 * made before the connect callback waits, and fails with it. */
	pair_open(&p, "a", "ca.crt", "x", "ca.crt");
	assert_int_equal(end_write(&p.c, "raft message", 12), 0);
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(p.c.connect_status, QFS_EIO);
	WAIT_FOR(p.c.writes == 1, 2000);
	assert_int_equal(p.c.write_status[0], QFS_EIO);
	WAIT_FOR(p.sv.ends[0].read_err == QFS_EIO, 2000);
	assert_int_equal(p.sv.ends[0].len, 0);
	pair_close(&p);
	/* The client does not trust the server. */
	expect_refused("a", "ca.crt", "b", "other-ca.crt");
}

/* The server's certificate must name the address dialled. */
static void test_ip_mismatch_refused(void **state)
{
	(void)state;
	expect_refused("far", "ca.crt", "b", "ca.crt");
}

/* Plain TCP (a member without certificates) speaking to a TLS port. */
static void test_plaintext_client_refused(void **state)
{
	struct stream_tls *ta = tls_make("a", "ca.crt");
	const char hello[] = "QFSP\x01\x00\x00\x00 plain transport bytes";
	struct server sv;
	struct end c;
	char cn[16];

	(void)state;
	client_connect(&c, stream_tcp_factory(), "127.0.0.1",
		       server_start(&sv, stream_tls_factory(ta)));
	WAIT_FOR(c.connects == 1, 2000);
	assert_int_equal(c.connect_status, 0);
	assert_int_equal(stream_peer_name(c.s, cn, sizeof(cn)), QFS_ENOENT);
	end_read(&c);
	assert_int_equal(end_write(&c, hello, sizeof(hello)), 0);
	WAIT_FOR(sv.ends[0].read_err == QFS_EIO, 2000);
	assert_int_equal(sv.ends[0].len, 0);
	end_close(&sv.ends[0]); /* what the transport does on a read error */
	WAIT_FOR(c.read_err == QFS_EIO, 2000);
	end_close(&c);
	end_free(&c);
	server_stop(&sv);
	stream_tls_destroy(ta);
}

/* An accepted stream takes writes before its handshake and sends them, in
 * order, once it is done; its reads start before the handshake too. */
static void test_write_before_handshake(void **state)
{
	struct pair p;
	char cn[16];

	(void)state;
	pair_open(&p, "a", "ca.crt", "b", "ca.crt");
	p.sv.write_at_once = "hello, ";
	WAIT_FOR(p.sv.accepted == 1, 2000);
	/* Accepted; the handshake cannot have run yet (no loop turn), so
	 * the other end has proved nothing. */
	assert_int_equal(stream_peer_name(p.sv.ends[0].s, cn, sizeof(cn)), QFS_ENOENT);
	assert_int_equal(end_write(&p.sv.ends[0], "member", 6), 0);
	assert_int_equal(p.sv.ends[0].writes, 0);
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(p.c.connect_status, 0);
	end_read(&p.c);
	WAIT_FOR(p.c.len == 13, 2000);
	assert_memory_equal(p.c.got, "hello, member", 13);
	WAIT_FOR(p.sv.ends[0].writes == 2, 2000);
	assert_int_equal(p.sv.ends[0].write_status[0], 0);
	assert_int_equal(p.sv.ends[0].write_status[1], 0);
	pair_close(&p);
}

static void on_silent_connection(uv_stream_t *h, int status)
{
	uv_tcp_t *t = malloc(sizeof(*t));

	assert_int_equal(status, 0);
	assert_non_null(t);
	uv_tcp_init(h->loop, t);
	assert_int_equal(uv_accept(h, (uv_stream_t *)t), 0);
	h->data = t; /* kept to close it */
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void test_close_during_handshake(void **state)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss), before;
	uv_tcp_t silent;
	struct pair p;

	(void)state;
	/* Closed at once: connect gets ESHUTDOWN, then the close callback. */
	pair_open(&p, "a", "ca.crt", "b", "ca.crt");
	assert_int_equal(end_write(&p.c, "x", 1), 0);
	end_close(&p.c);
	assert_int_equal(p.c.connects, 1);
	assert_int_equal(p.c.connect_status, QFS_ESHUTDOWN);
	assert_int_equal(p.c.writes, 1);
	assert_int_equal(p.c.write_status[0], QFS_ESHUTDOWN);
	end_free(&p.c);

	/* An accepted stream closed before its handshake ended: its queued
	 * write is cancelled before its close callback; the client fails. */
	run_for(20);
	before = p.sv.accepted; /* the first client may or may not have got here */
	p.sv.write_at_once = "never sent";
	p.sv.read_at_once = 0;
	client_connect(&p.c, stream_tls_factory(p.ct), "127.0.0.1", ntohs(p.sv.port));
	WAIT_FOR(p.sv.accepted == before + 1, 2000);
	end_close(&p.sv.ends[before]);
	assert_int_equal(p.sv.ends[before].writes, 1);
	assert_int_equal(p.sv.ends[before].write_status[0], QFS_ESHUTDOWN);
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(p.c.connect_status, QFS_EIO);
	end_close(&p.c);
	end_free(&p.c);

	/* Closed mid-handshake, TCP up: a server that never answers. */
	assert_int_equal(uv_tcp_init(&loop, &silent), 0);
	silent.data = NULL;
	assert_int_equal(transport_addr_parse("127.0.0.1:0", &ss), 0);
	assert_int_equal(uv_tcp_bind(&silent, (struct sockaddr *)&ss, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&silent, 4, on_silent_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&silent, (struct sockaddr *)&ss, &len), 0);
	client_connect(&p.c, stream_tls_factory(p.ct), "127.0.0.1",
		       ntohs(((struct sockaddr_in *)&ss)->sin_port));
	WAIT_FOR(silent.data != NULL, 2000);
	run_for(30);
	assert_int_equal(p.c.connects, 0);
	end_close(&p.c);
	assert_int_equal(p.c.connects, 1);
	assert_int_equal(p.c.connect_status, QFS_ESHUTDOWN);
	uv_close((uv_handle_t *)silent.data, free_handle);
	uv_close((uv_handle_t *)&silent, NULL);
	pair_close(&p);
}

/* A stream closed from its own read callback gets no more callbacks. */
static void on_read_then_close(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len,
			       int err)
{
	struct end *e = arg;

	on_read(s, arg, data, len, err);
	if (!e->closed && e->len > 0)
		stream_close(s, on_closed, e);
}

static void test_close_from_callback(void **state)
{
	struct pair p;

	(void)state;
	pair_open(&p, "a", "ca.crt", "b", "ca.crt");
	p.sv.read_at_once = 0;
	WAIT_FOR(p.c.connects == 1, 2000);
	assert_int_equal(CALL(stream_read_start(p.sv.ends[0].s, on_read_then_close, &p.sv.ends[0])),
			 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(end_write(&p.c, "0123456789", 10), 0);
	WAIT_FOR(p.sv.ends[0].closed, 2000);
	run_for(30);
	assert_int_equal(p.sv.ends[0].closed, 1);
	assert_true(p.sv.ends[0].len >= 1 && p.sv.ends[0].len <= 80);
	assert_int_equal(p.sv.ends[0].events_after_close, 0);
	end_read(&p.c);
	WAIT_FOR(p.c.read_err == QFS_EIO, 2000);
	pair_close(&p);
}

/* ---- the transport over TLS --------------------------------------------------- */

struct node {
	struct transport *t;
	int port, closed, connected;
	size_t frames;
	uint64_t last_from;
	int asked; /* peer_allowed calls */
};

static void node_on_frame(void *arg, uint64_t from, uint8_t type, const uint8_t *p, size_t len)
{
	struct node *n = arg;

	(void)type;
	(void)p;
	(void)len;
	n->frames++;
	n->last_from = from;
}

static void node_on_state(void *arg, uint64_t peer, enum transport_peer_state st)
{
	struct node *n = arg;

	(void)peer;
	if (st == TRANSPORT_PEER_CONNECTED)
		n->connected++;
}

/* The identity rule of the test cluster: member 1 is "a", member 2 is "b". */
static bool node_allowed(void *arg, uint64_t id, const char *cert_name)
{
	struct node *n = arg;

	n->asked++;
	return cert_name && ((id == 1 && strcmp(cert_name, "a") == 0) ||
			     (id == 2 && strcmp(cert_name, "b") == 0));
}

/* With check: the transport asks node_allowed() about every link. */
static void node_start_checked(struct node *n, uint64_t id, struct stream_tls *t, bool check)
{
	struct transport_config cfg = {
	    .self_id = id,
	    .cluster_id = 7,
	    .listen_addr = "127.0.0.1:0",
	    .cb = {node_on_frame, node_on_state, n},
	    .streams = stream_tls_factory(t),
	    .peer_allowed = check ? node_allowed : NULL,
	};

	memset(n, 0, sizeof(*n));
	assert_int_equal(transport_create(&loop, &cfg, &n->t), 0);
	n->port = transport_listen_port(n->t);
}

static void node_start(struct node *n, uint64_t id, struct stream_tls *t)
{
	node_start_checked(n, id, t, false);
}

static void on_node_closed(void *arg)
{
	((struct node *)arg)->closed = 1;
}

static void node_stop(struct node *n)
{
	transport_close(n->t, on_node_closed, n);
	WAIT_FOR(n->closed, 2000);
}

static void node_add(struct node *a, uint64_t id, const struct node *b)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", b->port);
	assert_int_equal(transport_peer_add(a->t, id, addr), 0);
}

static void test_transport_over_tls(void **state)
{
	struct stream_tls *ta = tls_make("a", "ca.crt"), *tb = tls_make("b", "ca.crt");
	struct stream_tls *tx = tls_make("x", "ca.crt");
	struct node a, b, x;
	uint64_t t0;

	(void)state;
	node_start(&a, 1, ta);
	node_start(&b, 2, tb);
	node_start(&x, 3, tx);
	t0 = now_ms();
	node_add(&a, 2, &b);
	node_add(&b, 1, &a);
	WAIT_FOR(a.connected && b.connected, 2000);
	print_message("two TLS links up in %" PRIu64 " ms\n", now_ms() - t0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(transport_send(a.t, 2, 1, "append", 6), 0);
		assert_int_equal(transport_send(b.t, 1, 2, "ack", 3), 0);
	}
	WAIT_FOR(a.frames == 100 && b.frames == 100, 2000);
	assert_true(a.last_from == 2 && b.last_from == 1);
	/* x's certificate is from another CA: its frames never arrive, and
	 * it never counts a's link as up. */
	node_add(&x, 1, &a);
	for (int i = 0; i < 20; i++)
		transport_send(x.t, 1, 1, "vote for me", 11);
	run_for(300);
	assert_int_equal(a.frames, 100);
	assert_int_equal(x.connected, 0);
	node_stop(&x);
	node_stop(&a);
	node_stop(&b);
	stream_tls_destroy(ta);
	stream_tls_destroy(tb);
	stream_tls_destroy(tx);
}

/* A certificate from the CA proves membership, not which member: with
 * peer_allowed, a peer claiming an id its certificate does not name is
 * refused both ways, and the real member's link is not disturbed. */
static void test_transport_identity(void **state)
{
	struct stream_tls *ta = tls_make("a", "ca.crt"), *tb = tls_make("b", "ca.crt");
	struct node a, b, m, a2;
	size_t before;

	(void)state;
	node_start_checked(&a, 1, ta, true);
	node_start_checked(&b, 2, tb, true);
	node_add(&a, 2, &b);
	node_add(&b, 1, &a);
	WAIT_FOR(a.connected && b.connected, 2000);
	assert_int_equal(transport_send(b.t, 1, 1, "from b", 6), 0);
	WAIT_FOR(a.frames == 1, 2000);
	assert_true(a.asked >= 2 && b.asked >= 2); /* each side: inbound and outbound */

	/* m holds a's certificate (a valid one from the CA) and claims to be
	 * member 2: a refuses it before delivering anything. */
	node_start(&m, 2, ta);
	node_add(&m, 1, &a);
	for (int i = 0; i < 20; i++)
		transport_send(m.t, 1, 1, "vote for me", 11);
	run_for(300);
	assert_int_equal(a.frames, 1);
	assert_true(m.connected >= 1); /* its side comes up; a drops what it sends */
	/* b's own link to a was not replaced by the impostor's. */
	assert_int_equal(transport_send(b.t, 1, 1, "still b", 7), 0);
	WAIT_FOR(a.frames == 2, 2000);
	assert_int_equal(a.last_from, 2);

	/* Dialling: a2 (member 1) is told member 2 is at m's address, where
	 * a's certificate answers: it never counts the link as up nor sends. */
	node_start_checked(&a2, 1, ta, true);
	node_add(&a2, 2, &m);
	before = m.frames;
	for (int i = 0; i < 5; i++)
		transport_send(a2.t, 2, 1, "append", 6);
	run_for(300);
	assert_int_equal(a2.connected, 0);
	assert_true(a2.asked >= 1);
	assert_int_equal(m.frames, before);
	assert_true(transport_queued(a2.t, 2) > 0);
	node_stop(&a2);
	node_stop(&m);
	node_stop(&a);
	node_stop(&b);
	stream_tls_destroy(ta);
	stream_tls_destroy(tb);
}

int main(void)
{
	/* As in the daemon (fs/main.c): a peer that closes first makes a
	 * write fail with EPIPE, not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	/* Refusals log a warning each; that is expected here. */
	qfs_log_set_level(getenv("QFS_TEST_LOG") ? getenv("QFS_TEST_LOG") : "error");
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_load_errors),
	    T(test_handshake_and_data),
	    T(test_wrong_ca_refused),
	    T(test_ip_mismatch_refused),
	    T(test_plaintext_client_refused),
	    T(test_write_before_handshake),
	    T(test_close_during_handshake),
	    T(test_close_from_callback),
	    T(test_transport_over_tls),
	    T(test_transport_identity),
#undef T
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
