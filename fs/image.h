/*
 * State machine images: the replicated state beside the Raft log, as a
 * snapshot holds it (server_snapshot.c saves and loads them; a leader sends
 * one to a follower that is too far behind; `snapshot save` writes one to a
 * backup file and `snapshot restore` rewrites one for a new cluster).
 *
 *   u32 IMAGE_VERSION | u32 n | n x (u64 member id, u8 voter) |
 *   address book (book_encode) | dedup table (raft_dedup_encode) |
 *   users and roles (auth_encode) | the store (store_snapshot_save), to
 *   the end
 * Version 1 images (before users and roles) are still read: as no users,
 * no roles, auth disabled.
 *
 * The configuration a new cluster starts with (--initial-cluster) is made
 * here too, for a bootstrap and a restore alike.
 */
#ifndef QFS_IMAGE_H
#define QFS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"
#include "../raft/dedup.h"
#include "../raft/raft.h"
#include "auth.h"
#include "book.h"

struct image {
	struct raft_members members; /* the configuration at the image's index */
	struct book book;
	struct raft_dedup dedup; /* owned: image_close() */
	struct auth auth;	 /* owned: image_close() */
	const uint8_t *store;	 /* the store's part, inside the decoded bytes */
	size_t store_len;
};

/* Appends everything but the store's part, which the caller appends next
 * (store_snapshot_save(), or the store bytes of a decoded image). 0 or
 * QFS_ENOMEM. */
int image_head_encode(const struct raft_members *m, const struct book *b,
		      const struct raft_dedup *d, const struct auth *a, struct qbuf *out);

/* Decodes untrusted bytes up to the store's part (which the store checks
 * when it loads it). 0 (then image_close() when done), QFS_EMSG or
 * QFS_ENOMEM. out->store points into p. */
int image_decode(const uint8_t *p, size_t len, struct image *out);
void image_close(struct image *img);

/*
 * The configuration and address book of a new cluster: from ic,
 * "NAME=IP:PORT,..." (each a voter, at that peer address), or with ic NULL
 * the member `self` alone at self_peer/self_client (either may be "").
 * Member ids are server_name_id(NAME); m and b are replaced. QFS_EINVAL,
 * with one line in err, for a list that is malformed, names a member
 * twice, has more than RAFT_MAX_MEMBERS or does not name self.
 */
int image_initial_members(const char *ic, const char *self, const char *self_peer,
			  const char *self_client, struct raft_members *m, struct book *b,
			  char *err, size_t errlen);

#endif
