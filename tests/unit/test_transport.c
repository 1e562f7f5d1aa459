/*
 * Peer transport tests: real loopback sockets on ports the kernel picks,
 * several transports and raw uv TCP clients/servers in one uv loop. Each
 * test drives the loop until what it waits for happens or a deadline
 * passes, so a hang is a failure, not a stuck test.
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
#include <uv.h>
#include <zlib.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../common/log.h"
#include "../../raft/transport.h"
#include "loop_fixture.h"

#define CLUSTER 0xc1c1c1c1ULL

/* --- transport nodes ------------------------------------------------- */

struct rx {
	uint64_t from;
	uint8_t type;
	uint8_t *data;
	size_t len;
};

struct node {
	struct transport *t;
	uint64_t id;
	int port;
	int closed;
	struct rx *rx;
	size_t nrx, cap;
	struct {
		uint64_t peer;
		enum transport_peer_state state;
	} ev[512];
	size_t nev;
};

static void on_frame(void *arg, uint64_t from, uint8_t type, const uint8_t *payload, size_t len)
{
	struct node *n = arg;
	struct rx *r;

	if (n->nrx == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 64;
		n->rx = realloc(n->rx, n->cap * sizeof(*n->rx));
		assert_non_null(n->rx);
	}
	r = &n->rx[n->nrx++];
	r->from = from;
	r->type = type;
	r->len = len;
	r->data = malloc(len ? len : 1);
	assert_non_null(r->data);
	if (len)
		memcpy(r->data, payload, len);
}

static void on_peer_state(void *arg, uint64_t peer, enum transport_peer_state state)
{
	struct node *n = arg;

	if (n->nev < sizeof(n->ev) / sizeof(n->ev[0])) {
		n->ev[n->nev].peer = peer;
		n->ev[n->nev].state = state;
		n->nev++;
	}
}

static size_t events(const struct node *n, uint64_t peer, enum transport_peer_state state)
{
	size_t k = 0;

	for (size_t i = 0; i < n->nev; i++)
		k += n->ev[i].peer == peer && n->ev[i].state == state;
	return k;
}

static size_t frames_from(const struct node *n, uint64_t from)
{
	size_t k = 0;

	for (size_t i = 0; i < n->nrx; i++)
		k += n->rx[i].from == from;
	return k;
}

static void rx_clear(struct node *n)
{
	for (size_t i = 0; i < n->nrx; i++)
		free(n->rx[i].data);
	n->nrx = 0;
}

static void node_cfg(struct node *n, uint64_t id, struct transport_config *cfg, char *addr,
		     int port)
{
	memset(cfg, 0, sizeof(*cfg));
	sprintf(addr, "127.0.0.1:%d", port);
	cfg->self_id = id;
	cfg->cluster_id = CLUSTER;
	cfg->listen_addr = addr;
	cfg->cb.on_frame = on_frame;
	cfg->cb.on_peer_state = on_peer_state;
	cfg->cb.arg = n;
}

static void node_start_cfg(struct node *n, const struct transport_config *cfg)
{
	n->id = cfg->self_id;
	n->closed = 0;
	assert_int_equal(transport_create(&loop, cfg, &n->t), 0);
	n->port = transport_listen_port(n->t);
	assert_true(n->port > 0);
}

static void node_start(struct node *n, uint64_t id, int port)
{
	struct transport_config cfg;
	char addr[64];

	node_cfg(n, id, &cfg, addr, port);
	node_start_cfg(n, &cfg);
}

static void on_node_closed(void *arg)
{
	((struct node *)arg)->closed = 1;
}

static void node_stop(struct node *n)
{
	if (!n->t)
		return;
	transport_close(n->t, on_node_closed, n);
	n->t = NULL;
	WAIT_FOR(n->closed, 2000);
}

static void node_free(struct node *n)
{
	node_stop(n);
	rx_clear(n);
	free(n->rx);
	memset(n, 0, sizeof(*n));
}

static void add_peer(struct node *a, const struct node *b)
{
	char addr[64];

	sprintf(addr, "127.0.0.1:%d", b->port);
	assert_int_equal(transport_peer_add(a->t, b->id, addr), 0);
}

static void connect_pair(struct node *a, struct node *b)
{
	add_peer(a, b);
	add_peer(b, a);
	WAIT_FOR(events(a, b->id, TRANSPORT_PEER_CONNECTED) > 0 &&
		     events(b, a->id, TRANSPORT_PEER_CONNECTED) > 0,
		 2000);
}

/* A port nothing listens on (bound once, then released). */
static int free_port(void)
{
	struct node n = {0};
	int port;

	node_start(&n, 99, 0);
	port = n.port;
	node_free(&n);
	return port;
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* --- raw peers: plain uv TCP speaking (or not) our wire format ------- */

struct raw {
	uv_tcp_t tcp;
	uv_connect_t creq;
	int connected, eof, closed;
	size_t got;
	char buf[4096];
};

struct raw_write {
	uv_write_t req;
	uint8_t data[];
};

static void raw_on_connect(uv_connect_t *req, int status)
{
	struct raw *r = req->data;

	assert_int_equal(status, 0);
	r->connected = 1;
}

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct raw *r = h->data;

	(void)hint;
	*buf = uv_buf_init(r->buf, sizeof(r->buf));
}

static void raw_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct raw *r = s->data;

	(void)buf;
	if (n > 0)
		r->got += (size_t)n;
	else if (n < 0)
		r->eof = 1;
}

static void raw_connect(struct raw *r, int port)
{
	struct sockaddr_in sa;

	memset(r, 0, sizeof(*r));
	assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sa), 0);
	assert_int_equal(uv_tcp_init(&loop, &r->tcp), 0);
	r->tcp.data = r;
	r->creq.data = r;
	assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa, raw_on_connect),
			 0);
	WAIT_FOR(r->connected, 2000);
	assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_on_read), 0);
}

static void raw_on_written(uv_write_t *req, int status)
{
	(void)status; /* EPIPE is expected once the server has closed us */
	free(req->data);
}

static void raw_send(struct raw *r, const void *p, size_t len)
{
	struct raw_write *w = malloc(sizeof(*w) + len);
	uv_buf_t b;

	assert_non_null(w);
	memcpy(w->data, p, len);
	w->req.data = w;
	b = uv_buf_init((char *)w->data, (unsigned)len);
	assert_int_equal(uv_write(&w->req, (uv_stream_t *)&r->tcp, &b, 1, raw_on_written), 0);
}

static void raw_on_close(uv_handle_t *h)
{
	((struct raw *)h->data)->closed = 1;
}

static void raw_close(struct raw *r)
{
	uv_close((uv_handle_t *)&r->tcp, raw_on_close);
	WAIT_FOR(r->closed, 2000);
}

/* Appends a frame header (with the given fields) and payload to b. */
static void put_frame(struct qbuf *b, uint32_t magic, uint8_t version, uint8_t type,
		      uint32_t len_field, uint32_t crc, const void *payload, size_t len)
{
	qbuf_put_u32(b, magic);
	qbuf_put_u8(b, version);
	qbuf_put_u8(b, type);
	qbuf_put_u8(b, 0);
	qbuf_put_u8(b, 0);
	qbuf_put_u32(b, len_field);
	qbuf_put_u32(b, crc);
	qbuf_put(b, payload, len);
}

static void put_good(struct qbuf *b, uint8_t type, const void *payload, size_t len)
{
	put_frame(b, TRANSPORT_MAGIC, TRANSPORT_VERSION, type, (uint32_t)len,
		  (uint32_t)crc32(0L, payload, (uInt)len), payload, len);
}

static void hs_payload(uint8_t *p, uint64_t id, uint64_t cluster, uint8_t version)
{
	qfs_le64_put(p, id);
	qfs_le64_put(p + 8, cluster);
	p[16] = version;
}

static void put_handshake(struct qbuf *b, uint64_t id, uint64_t cluster)
{
	uint8_t hs[TRANSPORT_HANDSHAKE_SIZE];

	hs_payload(hs, id, cluster, TRANSPORT_VERSION);
	put_good(b, TRANSPORT_FRAME_HANDSHAKE, hs, sizeof(hs));
}

/* --- tests ----------------------------------------------------------- */

static void test_addr_parse(void **state)
{
	static const char *const bad[] = {
	    "",
	    "127.0.0.1",
	    "127.0.0.1:",
	    ":80",
	    "127.0.0.1:65536",
	    "1.2.3:80",
	    "localhost:80",
	    "::1:80",
	    "[::1]",
	    "[::1]80",
	    "[::1:80",
	    "127.0.0.1:80x",
	    "127.0.0.1:-1",
	    "127.0.0.1:+80",
	    "[]:80",
	    "1.2.3.4:123456",
	    "[127.0.0.1]:80",
	};
	struct sockaddr_storage ss;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;

	(void)state;
	assert_int_equal(transport_addr_parse("10.1.2.3:2380", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(v4->sin_port), 2380);
	assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x0a010203);
	assert_int_equal(transport_addr_parse("[::1]:65535", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(v6->sin6_port), 65535);
	assert_int_equal(v6->sin6_addr.s6_addr[15], 1);
	assert_int_equal(transport_addr_parse("0.0.0.0:0", &ss), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (transport_addr_parse(bad[i], &ss) != QFS_EINVAL)
			fail_msg("accepted bad address '%s'", bad[i]);
	assert_int_equal(transport_addr_parse(NULL, &ss), QFS_EINVAL);
}

static void test_api_errors(void **state)
{
	struct transport_config cfg;
	struct transport *t;
	struct node a = {0};
	char addr[64], used[64];
	uint8_t buf[16] = {0};

	(void)state;
	node_cfg(&a, 1, &cfg, addr, 0);
	cfg.listen_addr = "127.0.0.1";
	assert_int_equal(transport_create(&loop, &cfg, &t), QFS_EINVAL);
	cfg.listen_addr = addr;
	cfg.self_id = 0;
	assert_int_equal(transport_create(&loop, &cfg, &t), QFS_EINVAL);
	cfg.self_id = 1;
	cfg.max_frame = 1000;
	cfg.max_queue = 999;
	assert_int_equal(transport_create(&loop, &cfg, &t), QFS_EINVAL);
	cfg.max_frame = 1000;
	cfg.max_queue = 0;
	node_start_cfg(&a, &cfg);

	/* The port is taken now. */
	sprintf(used, "127.0.0.1:%d", a.port);
	cfg.listen_addr = used;
	assert_int_equal(transport_create(&loop, &cfg, &t), QFS_EIO);

	assert_int_equal(transport_peer_add(a.t, 2, "127.0.0.1"), QFS_EINVAL);
	assert_int_equal(transport_peer_add(a.t, 2, "host:1"), QFS_EINVAL);
	assert_int_equal(transport_peer_add(a.t, 1, "127.0.0.1:1"), QFS_EINVAL);
	assert_int_equal(transport_peer_add(a.t, 0, "127.0.0.1:1"), QFS_EINVAL);
	assert_int_equal(transport_peer_add(a.t, 2, "127.0.0.1:1"), 0);
	assert_int_equal(transport_peer_add(a.t, 2, "127.0.0.1:2"), QFS_EEXIST);
	assert_int_equal(transport_send(a.t, 3, 1, buf, 1), QFS_ENOENT);
	assert_int_equal(transport_send(a.t, 2, TRANSPORT_FRAME_HANDSHAKE, buf, 1), QFS_EINVAL);
	{
		uint8_t *big = calloc(1, 1001);

		assert_int_equal(transport_send(a.t, 2, 1, big, 1001), QFS_EINVAL);
		assert_int_equal(transport_send(a.t, 2, 1, big, 1000), 0);
		free(big);
	}
	assert_int_equal(transport_queued(a.t, 2), 1000 + TRANSPORT_HDR_SIZE);
	assert_int_equal(transport_peer_remove(a.t, 2), 0);
	assert_int_equal(transport_peer_remove(a.t, 2), QFS_ENOENT);
	assert_int_equal(transport_send(a.t, 2, 1, buf, 1), QFS_ENOENT);
	/* Nothing listens there: retries fail quietly, with no event. */
	assert_int_equal(transport_peer_add(a.t, 3, "[::1]:1"), 0);
	run_for(100);
	assert_int_equal(a.nev, 0); /* never connected: no event */
	node_free(&a);
}

static void test_three_way(void **state)
{
	struct node n[3] = {{0}};
	char msg[64];

	(void)state;
	for (int i = 0; i < 3; i++)
		node_start(&n[i], (uint64_t)i + 1, 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				add_peer(&n[i], &n[j]);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				WAIT_FOR(events(&n[i], n[j].id, TRANSPORT_PEER_CONNECTED) == 1,
					 2000);

	for (int k = 0; k < 10; k++)
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++) {
				if (i == j)
					continue;
				snprintf(msg, sizeof(msg), "%d->%d #%d", i + 1, j + 1, k);
				assert_int_equal(transport_send(n[i].t, n[j].id, (uint8_t)(k + 1),
								msg, strlen(msg)),
						 0);
			}
	/* An empty payload is a valid frame too. */
	assert_int_equal(transport_send(n[0].t, 2, 200, NULL, 0), 0);
	WAIT_FOR(n[0].nrx == 20 && n[1].nrx == 21 && n[2].nrx == 20, 2000);

	for (int j = 0; j < 3; j++) {
		int next[3] = {0};

		for (size_t r = 0; r < n[j].nrx; r++) {
			struct rx *x = &n[j].rx[r];
			int i = (int)x->from - 1;

			assert_true(i >= 0 && i < 3 && i != j);
			if (x->type == 200) {
				assert_int_equal(i, 0);
				assert_int_equal(j, 1);
				assert_int_equal(x->len, 0);
				continue;
			}
			snprintf(msg, sizeof(msg), "%d->%d #%d", i + 1, j + 1, next[i]);
			assert_int_equal(x->type, next[i] + 1);
			assert_int_equal(x->len, strlen(msg));
			assert_memory_equal(x->data, msg, x->len);
			next[i]++;
		}
	}
	for (int i = 0; i < 3; i++)
		node_free(&n[i]);
}

static void test_large_frames(void **state)
{
	struct node a = {0}, b = {0};
	const size_t big = 6u << 20;
	uint8_t *p = malloc(TRANSPORT_MAX_FRAME_DEFAULT + 1);

	(void)state;
	assert_non_null(p);
	node_start(&a, 1, 0);
	node_start(&b, 2, 0);
	connect_pair(&a, &b);
	for (uint32_t i = 0; i < 3; i++) {
		fill(p, big, i);
		assert_int_equal(transport_send(a.t, 2, 7, p, big), 0);
		assert_int_equal(transport_send(a.t, 2, 8, "x", 1), 0);
	}
	fill(p, TRANSPORT_MAX_FRAME_DEFAULT, 42);
	assert_int_equal(transport_send(b.t, 1, 9, p, TRANSPORT_MAX_FRAME_DEFAULT), 0);
	assert_int_equal(transport_send(b.t, 1, 9, p, TRANSPORT_MAX_FRAME_DEFAULT + 1), QFS_EINVAL);
	WAIT_FOR(b.nrx == 6 && a.nrx == 1, 5000);

	for (uint32_t i = 0; i < 3; i++) {
		fill(p, big, i);
		assert_int_equal(b.rx[2 * i].type, 7);
		assert_int_equal(b.rx[2 * i].len, big);
		assert_memory_equal(b.rx[2 * i].data, p, big);
		assert_int_equal(b.rx[2 * i + 1].type, 8);
		assert_int_equal(b.rx[2 * i + 1].len, 1);
	}
	fill(p, TRANSPORT_MAX_FRAME_DEFAULT, 42);
	assert_int_equal(a.rx[0].len, TRANSPORT_MAX_FRAME_DEFAULT);
	assert_memory_equal(a.rx[0].data, p, TRANSPORT_MAX_FRAME_DEFAULT);
	WAIT_FOR(transport_queued(a.t, 2) == 0, 1000);
	free(p);
	node_free(&a);
	node_free(&b);
}

static void test_ipv6(void **state)
{
	struct transport_config cfg;
	struct node a = {0}, b = {0};
	char addr[64];
	struct transport *t;

	(void)state;
	node_cfg(&a, 1, &cfg, addr, 0);
	cfg.listen_addr = "[::1]:0";
	if (transport_create(&loop, &cfg, &t) != 0)
		skip(); /* no IPv6 loopback here */
	transport_close(t, NULL, NULL);
	node_start_cfg(&a, &cfg);
	node_cfg(&b, 2, &cfg, addr, 0);
	cfg.listen_addr = "[::1]:0";
	node_start_cfg(&b, &cfg);
	sprintf(addr, "[::1]:%d", b.port);
	assert_int_equal(transport_peer_add(a.t, 2, addr), 0);
	sprintf(addr, "[::1]:%d", a.port);
	assert_int_equal(transport_peer_add(b.t, 1, addr), 0);
	assert_int_equal(transport_send(a.t, 2, 1, "v6", 2), 0);
	assert_int_equal(transport_send(b.t, 1, 1, "6v", 2), 0);
	WAIT_FOR(a.nrx == 1 && b.nrx == 1, 2000);
	assert_memory_equal(b.rx[0].data, "v6", 2);
	assert_memory_equal(a.rx[0].data, "6v", 2);
	node_free(&a);
	node_free(&b);
}

/* Many frames of sizes that straddle read boundaries, to two peers. */
static void test_order(void **state)
{
	struct node n[3] = {{0}};
	const uint32_t count = 3000;
	uint8_t buf[5000];

	(void)state;
	for (int i = 0; i < 3; i++)
		node_start(&n[i], (uint64_t)i + 1, 0);
	connect_pair(&n[0], &n[1]);
	connect_pair(&n[0], &n[2]);
	for (uint32_t k = 0; k < count; k++) {
		size_t len = 4 + (k * 7919) % 4900;

		fill(buf, len, k);
		qfs_le32_put(buf, k);
		assert_int_equal(transport_send(n[0].t, 2, 1, buf, len), 0);
		assert_int_equal(transport_send(n[0].t, 3, 1, buf, len), 0);
		if (k % 500 == 0)
			uv_run(&loop, UV_RUN_NOWAIT);
	}
	WAIT_FOR(n[1].nrx == count && n[2].nrx == count, 5000);
	for (int j = 1; j < 3; j++)
		for (uint32_t k = 0; k < count; k++) {
			size_t len = 4 + (k * 7919) % 4900;

			fill(buf, len, k);
			qfs_le32_put(buf, k);
			assert_int_equal(n[j].rx[k].from, 1);
			assert_int_equal(n[j].rx[k].len, len);
			assert_memory_equal(n[j].rx[k].data, buf, len);
		}
	for (int i = 0; i < 3; i++)
		node_free(&n[i]);
}

static void test_restart_and_reset(void **state)
{
	struct node a = {0}, b = {0};
	int port;
	size_t connects;

	(void)state;
	node_start(&a, 1, 0);
	node_start(&b, 2, 0);
	port = b.port;
	connect_pair(&a, &b);
	assert_int_equal(transport_send(a.t, 2, 1, "before", 6), 0);
	WAIT_FOR(b.nrx == 1, 1000);

	/* b goes away: a hears of it at once, from both connections (and
	 * only then is a frame sure to be queued rather than written to the
	 * dying connection). */
	node_free(&b);
	WAIT_FOR(events(&a, 2, TRANSPORT_PEER_RESET) == 2, 1000);
	connects = events(&a, 2, TRANSPORT_PEER_CONNECTED);
	assert_int_equal(connects, 1);

	/* Queued while b is down, delivered when it is back. */
	assert_int_equal(transport_send(a.t, 2, 1, "while-down", 10), 0);
	run_for(120); /* a few refused reconnects */
	node_start(&b, 2, port);
	add_peer(&b, &a);
	assert_int_equal(transport_send(a.t, 2, 1, "after", 5), 0);
	/* Backoff is still short: ~25 + 50 + 100 ms of retries so far. */
	WAIT_FOR(b.nrx == 2, 1000);
	assert_memory_equal(b.rx[0].data, "while-down", 10);
	assert_memory_equal(b.rx[1].data, "after", 5);
	assert_int_equal(events(&a, 2, TRANSPORT_PEER_CONNECTED), 2);

	/* And the other way. */
	WAIT_FOR(events(&b, 1, TRANSPORT_PEER_CONNECTED) == 1, 2000);
	assert_int_equal(transport_send(b.t, 1, 3, "back", 4), 0);
	WAIT_FOR(a.nrx == 1, 1000);
	assert_int_equal(a.rx[0].from, 2);
	assert_memory_equal(a.rx[0].data, "back", 4);
	node_free(&a);
	node_free(&b);
}

/* A frame from b reaches a: the good link still works. */
static void check_link(struct node *a, struct node *b)
{
	size_t before = frames_from(a, b->id);

	assert_int_equal(transport_send(b->t, a->id, 1, "ping", 4), 0);
	WAIT_FOR(frames_from(a, b->id) == before + 1, 1000);
}

/* Sends b on a fresh raw connection to a and expects a to close it. */
static void expect_rejected(struct node *a, struct node *good, struct qbuf *b)
{
	struct raw r;
	size_t len = 0;
	uint8_t *p = qbuf_take(b, &len);

	raw_connect(&r, a->port);
	if (len)
		raw_send(&r, p, len);
	WAIT_FOR(r.eof, 2000);
	assert_int_equal(r.got, 0);
	raw_close(&r);
	free(p);
	check_link(a, good);
}

static void test_bad_clients(void **state)
{
	struct transport_config cfg;
	struct node a = {0}, b = {0};
	struct qbuf q;
	struct raw r;
	char addr[64];
	uint8_t hs[TRANSPORT_HANDSHAKE_SIZE], junk[64];
	const size_t max = 4096;
	uint8_t *big = calloc(1, max + 1);

	(void)state;
	assert_non_null(big);
	node_cfg(&a, 1, &cfg, addr, 0);
	cfg.max_frame = max;
	cfg.handshake_timeout_ms = 200;
	node_start_cfg(&a, &cfg);
	node_start(&b, 2, 0);
	connect_pair(&a, &b);
	check_link(&a, &b);
	qbuf_init(&q);

	/* Positive control: a raw client doing it right is heard, so the
	 * rejections below are about the one thing each gets wrong. */
	raw_connect(&r, a.port);
	put_handshake(&q, 77, CLUSTER);
	put_good(&q, 5, "hello", 5);
	put_good(&q, 6, big, max);
	{
		size_t len;
		uint8_t *p = qbuf_take(&q, &len);

		raw_send(&r, p, len);
		free(p);
	}
	WAIT_FOR(frames_from(&a, 77) == 2, 1000);
	assert_int_equal(a.rx[a.nrx - 2].type, 5);
	assert_memory_equal(a.rx[a.nrx - 2].data, "hello", 5);
	assert_int_equal(a.rx[a.nrx - 1].len, max);
	run_for(30);
	assert_false(r.eof);

	/* Member 77 reconnects before its old connection ended: the new one
	 * replaces it, quietly. */
	{
		struct raw r2;
		size_t len;
		uint8_t *p;

		raw_connect(&r2, a.port);
		put_handshake(&q, 77, CLUSTER);
		put_good(&q, 5, "again", 5);
		p = qbuf_take(&q, &len);
		raw_send(&r2, p, len);
		free(p);
		WAIT_FOR(frames_from(&a, 77) == 3 && r.eof, 1000);
		assert_false(r2.eof);
		raw_close(&r);
		run_for(30);
		assert_int_equal(events(&a, 77, TRANSPORT_PEER_RESET), 0);
		raw_close(&r2);
	}
	/* The end of an established inbound connection is a reset. */
	WAIT_FOR(events(&a, 77, TRANSPORT_PEER_RESET) == 1, 1000);

	fill(junk, sizeof(junk), 3);
	qbuf_put(&q, junk, sizeof(junk));
	expect_rejected(&a, &b, &q);

	hs_payload(hs, 78, CLUSTER, TRANSPORT_VERSION);
	put_frame(&q, TRANSPORT_MAGIC ^ 1, TRANSPORT_VERSION, 0, sizeof(hs),
		  (uint32_t)crc32(0L, hs, sizeof(hs)), hs, sizeof(hs));
	expect_rejected(&a, &b, &q);

	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION + 1, 0, sizeof(hs),
		  (uint32_t)crc32(0L, hs, sizeof(hs)), hs, sizeof(hs));
	expect_rejected(&a, &b, &q);

	/* Handshake payload with the wrong version inside. */
	hs_payload(hs, 78, CLUSTER, TRANSPORT_VERSION + 1);
	put_good(&q, TRANSPORT_FRAME_HANDSHAKE, hs, sizeof(hs));
	expect_rejected(&a, &b, &q);

	/* Bad CRC on the handshake, then on a data frame. */
	hs_payload(hs, 78, CLUSTER, TRANSPORT_VERSION);
	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION, 0, sizeof(hs),
		  (uint32_t)crc32(0L, hs, sizeof(hs)) ^ 0x100, hs, sizeof(hs));
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 78, CLUSTER);
	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION, 5, 5,
		  (uint32_t)crc32(0L, (const uint8_t *)"hellp", 5), "hello", 5);
	expect_rejected(&a, &b, &q);

	/* Wrong cluster, our own id, id 0. */
	put_handshake(&q, 78, CLUSTER + 1);
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 1, CLUSTER);
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 0, CLUSTER);
	expect_rejected(&a, &b, &q);

	/* Data before the handshake; a second handshake. */
	put_good(&q, 5, "hello", 5);
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 78, CLUSTER);
	put_handshake(&q, 78, CLUSTER);
	expect_rejected(&a, &b, &q);

	/* Oversized lengths, announced without the bytes: rejected from the
	 * header alone (before the handshake anything but its size is). */
	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION, 0, 1u << 30, 0, NULL, 0);
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 78, CLUSTER);
	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION, 5, (uint32_t)max + 1, 0, NULL, 0);
	expect_rejected(&a, &b, &q);
	put_handshake(&q, 78, CLUSTER);
	put_frame(&q, TRANSPORT_MAGIC, TRANSPORT_VERSION, 5, UINT32_MAX, 0, NULL, 0);
	expect_rejected(&a, &b, &q);

	/* Silence: dropped after the handshake timeout. */
	expect_rejected(&a, &b, &q);

	/* None of them got a frame through, nor a state event. */
	assert_int_equal(frames_from(&a, 78), 0);
	assert_int_equal(events(&a, 78, TRANSPORT_PEER_RESET), 0);
	assert_int_equal(frames_from(&a, 0), 0);
	assert_int_equal(events(&a, 2, TRANSPORT_PEER_RESET), 0);
	qbuf_close(&q);
	free(big);
	node_free(&a);
	node_free(&b);
}

/* --- raw server: accepts, then reads nothing or talks back ---------- */

struct raw_server {
	uv_tcp_t tcp;
	struct raw conn;
	int port, accepted, talk_back, closed;
};

static void free_on_close(uv_handle_t *h)
{
	free(h);
}

static void raw_server_on_conn(uv_stream_t *s, int status)
{
	struct raw_server *rs = s->data;

	assert_int_equal(status, 0);
	if (rs->accepted) {
		/* A reconnect: only the first connection is studied. */
		uv_tcp_t *extra = malloc(sizeof(*extra));

		assert_non_null(extra);
		uv_tcp_init(&loop, extra);
		assert_int_equal(uv_accept(s, (uv_stream_t *)extra), 0);
		uv_close((uv_handle_t *)extra, free_on_close);
		return;
	}
	uv_tcp_init(&loop, &rs->conn.tcp);
	rs->conn.tcp.data = &rs->conn;
	assert_int_equal(uv_accept(s, (uv_stream_t *)&rs->conn.tcp), 0);
	rs->accepted = 1;
	if (rs->talk_back) {
		assert_int_equal(
		    uv_read_start((uv_stream_t *)&rs->conn.tcp, raw_alloc, raw_on_read), 0);
		raw_send(&rs->conn, "unexpected", 10);
	}
}

static void raw_server_start(struct raw_server *rs, int talk_back)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(rs, 0, sizeof(*rs));
	rs->talk_back = talk_back;
	assert_int_equal(transport_addr_parse("127.0.0.1:0", &ss), 0);
	uv_tcp_init(&loop, &rs->tcp);
	rs->tcp.data = rs;
	assert_int_equal(uv_tcp_bind(&rs->tcp, (struct sockaddr *)&ss, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&rs->tcp, 8, raw_server_on_conn), 0);
	assert_int_equal(uv_tcp_getsockname(&rs->tcp, (struct sockaddr *)&ss, &len), 0);
	rs->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void raw_server_on_close(uv_handle_t *h)
{
	((struct raw_server *)h->data)->closed = 1;
}

static void raw_server_stop(struct raw_server *rs)
{
	if (rs->accepted)
		raw_close(&rs->conn);
	uv_close((uv_handle_t *)&rs->tcp, raw_server_on_close);
	WAIT_FOR(rs->closed, 1000);
}

static void test_outbound_talk_back(void **state)
{
	struct raw_server rs;
	struct node a = {0};
	char addr[64];

	(void)state;
	node_start(&a, 1, 0);
	raw_server_start(&rs, 1);
	sprintf(addr, "127.0.0.1:%d", rs.port);
	assert_int_equal(transport_peer_add(a.t, 5, addr), 0);
	WAIT_FOR(events(&a, 5, TRANSPORT_PEER_DISCONNECTED) == 1, 2000);
	assert_int_equal(events(&a, 5, TRANSPORT_PEER_CONNECTED), 1);
	assert_int_equal(events(&a, 5, TRANSPORT_PEER_RESET), 0);
	/* It sent its handshake, then hung up on us. */
	WAIT_FOR(rs.conn.eof, 1000);
	assert_int_equal(rs.conn.got, TRANSPORT_HDR_SIZE + TRANSPORT_HANDSHAKE_SIZE);
	node_free(&a);
	raw_server_stop(&rs);
}

static uint64_t counted_rand(void *arg)
{
	return ++*(uint64_t *)arg;
}

static void test_queue_bound(void **state)
{
	struct transport_config cfg;
	struct node a = {0}, b = {0};
	const size_t fsz = 1024, nfit = 10;
	uint64_t rand_calls = 0;
	char addr[64], baddr[64];
	uint8_t buf[1024];
	int port = free_port();
	size_t sent = 0;

	(void)state;
	node_cfg(&a, 1, &cfg, addr, 0);
	cfg.max_frame = fsz;
	cfg.max_queue = nfit * (fsz + TRANSPORT_HDR_SIZE) + TRANSPORT_HDR_SIZE;
	cfg.rand = counted_rand;
	cfg.rand_arg = &rand_calls;
	node_start_cfg(&a, &cfg);
	sprintf(baddr, "127.0.0.1:%d", port);
	assert_int_equal(transport_peer_add(a.t, 2, baddr), 0);
	/* Retries use the caller's jitter, and back off: delays of about
	 * 25, 50, 100, 200, 400 ms fit 5 or 6 attempts in 800 ms (a fixed
	 * 50 ms would make 16 or more; a loaded machine makes fewer). */
	run_for(800);
	if (rand_calls < 2 || rand_calls > 10)
		fail_msg("%" PRIu64 " reconnect attempts in 800 ms", rand_calls);

	for (int i = 0; i < 100; i++) {
		int rv;

		fill(buf, sizeof(buf), (uint32_t)i);
		qfs_le32_put(buf, (uint32_t)i);
		rv = transport_send(a.t, 2, 1, buf, sizeof(buf));
		if (rv == QFS_EAGAIN)
			break;
		assert_int_equal(rv, 0);
		sent++;
	}
	assert_int_equal(sent, nfit);
	assert_int_equal(transport_queued(a.t, 2), nfit * (fsz + TRANSPORT_HDR_SIZE));
	/* A small one still fits in the slack; then nothing does. */
	assert_int_equal(transport_send(a.t, 2, 1, NULL, 0), 0);
	assert_int_equal(transport_send(a.t, 2, 1, NULL, 0), QFS_EAGAIN);

	node_start(&b, 2, port);
	WAIT_FOR(b.nrx == nfit + 1, 3000);
	for (size_t i = 0; i < nfit; i++) {
		fill(buf, sizeof(buf), (uint32_t)i);
		qfs_le32_put(buf, (uint32_t)i);
		assert_int_equal(b.rx[i].len, sizeof(buf));
		assert_memory_equal(b.rx[i].data, buf, sizeof(buf));
	}
	WAIT_FOR(transport_queued(a.t, 2) == 0, 1000);
	assert_int_equal(transport_send(a.t, 2, 1, buf, sizeof(buf)), 0);
	WAIT_FOR(b.nrx == nfit + 2, 1000);
	node_free(&a);
	node_free(&b);
}

/* A peer that accepts and never reads fills its own queue only. */
static void test_slow_peer(void **state)
{
	struct transport_config cfg;
	struct raw_server rs;
	struct node a = {0}, b = {0};
	const size_t fsz = 256 << 10;
	uint8_t *buf = calloc(1, fsz);
	char addr[64], saddr[64];
	int full = 0;

	(void)state;
	assert_non_null(buf);
	node_cfg(&a, 1, &cfg, addr, 0);
	cfg.max_queue = 1 << 20;
	cfg.max_frame = fsz;
	node_start_cfg(&a, &cfg);
	node_start(&b, 2, 0);
	connect_pair(&a, &b);
	raw_server_start(&rs, 0);
	sprintf(saddr, "127.0.0.1:%d", rs.port);
	assert_int_equal(transport_peer_add(a.t, 5, saddr), 0);
	WAIT_FOR(events(&a, 5, TRANSPORT_PEER_CONNECTED) == 1, 2000);

	/* Kernel buffers take some MiB before the queue fills. */
	for (int i = 0; i < 2000 && !full; i++) {
		int rv = transport_send(a.t, 5, 1, buf, fsz);

		if (rv == QFS_EAGAIN)
			full = 1;
		else
			assert_int_equal(rv, 0);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	assert_true(full);
	assert_true(transport_queued(a.t, 5) <= cfg.max_queue);
	for (int i = 0; i < 20; i++) { /* not stuck behind the full queue to 5 */
		assert_int_equal(transport_send(a.t, 2, 1, buf, 1000), 0);
		WAIT_FOR(b.nrx == (size_t)i + 1, 1000);
	}
	assert_int_equal(transport_send(a.t, 5, 1, buf, fsz), QFS_EAGAIN);
	free(buf);
	node_free(&a);
	node_free(&b);
	raw_server_stop(&rs);
}

/* Removing a peer, closing with frames in flight: nothing leaks, nothing
 * is reported after close. */
static void test_remove_and_close_busy(void **state)
{
	struct node a = {0}, b = {0};
	uint8_t *buf = calloc(1, 1 << 20);
	size_t nev;

	(void)state;
	assert_non_null(buf);
	node_start(&a, 1, 0);
	node_start(&b, 2, 0);
	connect_pair(&a, &b);
	for (int i = 0; i < 8; i++)
		assert_int_equal(transport_send(a.t, 2, 1, buf, 1 << 20), 0);
	assert_int_equal(transport_peer_remove(a.t, 2), 0);
	assert_int_equal(transport_send(a.t, 2, 1, buf, 1), QFS_ENOENT);
	assert_int_equal(transport_peer_add(a.t, 2, "127.0.0.1:1"), 0);
	assert_int_equal(transport_peer_remove(a.t, 2), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(transport_send(b.t, 1, 1, buf, 1 << 20), 0);
	nev = a.nev;
	transport_close(a.t, on_node_closed, &a);
	a.t = NULL;
	WAIT_FOR(a.closed, 2000);
	assert_int_equal(a.nev, nev);
	/* b sees a go away. */
	WAIT_FOR(events(&b, 1, TRANSPORT_PEER_RESET) >= 1, 1000);
	free(buf);
	node_free(&a);
	node_free(&b);
}

int main(void)
{
	/* As in the daemon (fs/main.c): a peer that closes first makes a
	 * write fail with EPIPE, not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	/* Rejections log a warning each; that is expected here. */
	qfs_log_set_level(getenv("QFS_TEST_LOG") ? getenv("QFS_TEST_LOG") : "error");
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, loop_setup, loop_teardown)
	    T(test_addr_parse),		T(test_api_errors),
	    T(test_three_way),		T(test_ipv6),
	    T(test_large_frames),	T(test_order),
	    T(test_restart_and_reset),	T(test_bad_clients),
	    T(test_outbound_talk_back), T(test_queue_bound),
	    T(test_slow_peer),		T(test_remove_and_close_busy),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
