/* Log lines: see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"

static enum qfs_log_level min_level = QFS_LOG_INFO;
static int json_format;
static char member_name[64];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int qfs_log_set_level(const char *name)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			min_level = i;
			return 0;
		}
	}
	return QFS_EINVAL;
}

int qfs_log_set_format(const char *name)
{
	if (strcmp(name, "text") == 0)
		json_format = 0;
	else if (strcmp(name, "json") == 0)
		json_format = 1;
	else
		return QFS_EINVAL;
	return 0;
}

void qfs_log_set_name(const char *name)
{
	snprintf(member_name, sizeof(member_name), "%s", name ? name : "");
}

/* Appends s to out as a JSON string body (no quotes). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = c;
		} else if (c < 0x20) {
			n += snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = c;
		}
	}
	out[n] = 0;
	return n;
}

void qfs_log(enum qfs_log_level level, const char *fmt, ...)
{
	char msg[2048], line[4600], ts[40];
	struct timespec now;
	struct tm tm;
	va_list ap;
	int n;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
	if (json_format) {
		char esc[4200];

		json_escape(esc, sizeof(esc), msg);
		n = snprintf(line, sizeof(line),
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"member\":\"%s\",\"msg\":\"%s\"}\n", ts,
			     level_names[level], member_name, esc);
	} else {
		n = snprintf(line, sizeof(line), "%s %-5s %s: %s\n", ts, level_names[level],
			     member_name[0] ? member_name : "quorumfs", msg);
	}
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}
