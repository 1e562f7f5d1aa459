/*
 * Logging: one line per event to stderr, text or JSON, with a level filter.
 * Thread-safe (one write(2) per line).
 */
#ifndef QFS_LOG_H
#define QFS_LOG_H

enum qfs_log_level { QFS_LOG_DEBUG, QFS_LOG_INFO, QFS_LOG_WARN, QFS_LOG_ERROR };

/* Returns 0, or QFS_EINVAL for an unknown level/format name. */
int qfs_log_set_level(const char *name);
int qfs_log_set_format(const char *name); /* "text" or "json" */
/* Every line carries this member name (copied; may be NULL). */
void qfs_log_set_name(const char *name);

void qfs_log(enum qfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) qfs_log(QFS_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) qfs_log(QFS_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) qfs_log(QFS_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) qfs_log(QFS_LOG_ERROR, __VA_ARGS__)

#endif
