/* State machine images and a new cluster's first configuration: see image.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../raft/transport.h"
#include "image.h"
#include "server.h"

#define IMAGE_VERSION 2 /* 2: users and roles after the dedup table */
#define IMAGE_VERSION_NO_AUTH 1

int image_head_encode(const struct raft_members *m, const struct book *b,
		      const struct raft_dedup *d, const struct auth *a, struct qbuf *out)
{
	qbuf_put_u32(out, IMAGE_VERSION);
	qbuf_put_u32(out, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		qbuf_put_u64(out, m->m[i].id);
		qbuf_put_u8(out, m->m[i].voter);
	}
	book_encode(b, out);
	raft_dedup_encode(d, out);
	auth_encode(a, out);
	return qbuf_error(out);
}

int image_decode(const uint8_t *p, size_t len, struct image *out)
{
	struct qreader r;
	struct raft_members *m = &out->members;
	uint32_t version;
	int rv = QFS_EMSG;

	memset(out, 0, sizeof(*out));
	raft_dedup_init(&out->dedup);
	auth_init(&out->auth);
	qreader_init(&r, p, len);
	version = qreader_u32(&r);
	if (version != IMAGE_VERSION && version != IMAGE_VERSION_NO_AUTH)
		goto malformed;
	m->n = qreader_u32(&r);
	if (m->n > RAFT_MAX_MEMBERS)
		goto malformed;
	for (uint32_t i = 0; i < m->n; i++) {
		m->m[i].id = qreader_u64(&r);
		m->m[i].voter = qreader_u8(&r) != 0;
	}
	if (qreader_error(&r) || book_decode(&out->book, &r) || raft_dedup_decode(&out->dedup, &r))
		goto malformed;
	if (version == IMAGE_VERSION && (rv = auth_decode(&out->auth, &r)) != 0)
		goto malformed;
	out->store = r.p;
	out->store_len = r.left;
	return 0;
malformed:
	image_close(out);
	return rv == QFS_ENOMEM ? rv : QFS_EMSG;
}

void image_close(struct image *img)
{
	raft_dedup_close(&img->dedup);
	auth_close(&img->auth);
}

int image_initial_members(const char *ic, const char *self, const char *self_peer,
			  const char *self_client, struct raft_members *m, struct book *b,
			  char *err, size_t errlen)
{
	char *copy, *save = NULL, *tok;
	int rv = 0;

	memset(m, 0, sizeof(*m));
	memset(b, 0, sizeof(*b));
	if (!ic) {
		m->n = 1;
		m->m[0] = (struct raft_member){server_name_id(self), true};
		rv = book_set(b, server_name_id(self), self, self_peer, self_client);
		if (rv)
			snprintf(err, errlen, "member name or address too long");
		return rv;
	}
	if (!(copy = strdup(ic)))
		return QFS_ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !rv; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		struct sockaddr_storage sa;
		uint64_t id;

		if (!eq || eq == tok || m->n == RAFT_MAX_MEMBERS ||
		    transport_addr_parse(eq + 1, &sa) != 0) {
			snprintf(err, errlen, "--initial-cluster: '%s' is not NAME=IP:PORT", tok);
			rv = QFS_EINVAL;
			break;
		}
		*eq = 0;
		id = server_name_id(tok);
		if (book_find(b, id)) {
			snprintf(err, errlen, "--initial-cluster names %s twice", tok);
			rv = QFS_EINVAL;
			break;
		}
		m->m[m->n++] = (struct raft_member){id, true};
		rv = book_set(b, id, tok, eq + 1, "");
		if (rv)
			snprintf(err, errlen, "--initial-cluster: '%s': name or address too long",
				 tok);
	}
	free(copy);
	if (!rv && !book_find(b, server_name_id(self))) {
		snprintf(err, errlen, "--initial-cluster does not name this member (%s)", self);
		rv = QFS_EINVAL;
	}
	return rv;
}
