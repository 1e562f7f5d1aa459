/* --metrics-listen: /metrics, /health and /readyz over HTTP; see metrics_http.c. */
#ifndef QFS_METRICS_HTTP_H
#define QFS_METRICS_HTTP_H

struct server;
struct metrics_http;

/* Loop thread, before server_run(). 0, QFS_EINVAL (bad address) or QFS_EIO
 * (cannot listen), with the reason logged. */
int metrics_http_create(struct server *srv, const char *addr, struct metrics_http **out);
/* Loop thread, after server_run() returned; NULL is fine. */
void metrics_http_close(struct metrics_http *mh);

#endif
