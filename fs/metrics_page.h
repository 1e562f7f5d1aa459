/* The Prometheus page of a member; see metrics_page.c. */
#ifndef QFS_METRICS_PAGE_H
#define QFS_METRICS_PAGE_H

#include "../common/codec.h"

struct server;

/* Any thread (takes the server's read lock itself). Appends the page to out. */
void metrics_page(struct server *srv, struct qbuf *out);

#endif
