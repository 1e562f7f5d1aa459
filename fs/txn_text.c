/*
 * The parser of `quorumfs txn`'s input (txn_text.h): line by line, each
 * line a compare or a request according to the block it is in, blank lines
 * ending blocks. Strings are unquoted into one arena as they are read (the
 * unquoted form of a token is never longer than the token plus its NUL),
 * so keys and values need no allocation of their own.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../store/store.h"
#include "txn_text.h"

struct lex {
	const char *p, *end; /* the rest of the current line */
	char *out;	     /* where the next string goes in the arena */
	unsigned line;
	char *err;
	size_t errlen;
};

static int syntax_error(struct lex *lx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int syntax_error(struct lex *lx, const char *fmt, ...)
{
	int n = snprintf(lx->err, lx->errlen, "line %u: ", lx->line);
	va_list ap;

	if (n >= 0 && (size_t)n < lx->errlen) {
		va_start(ap, fmt);
		vsnprintf(lx->err + n, lx->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return QFS_EINVAL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool at_end(struct lex *lx)
{
	while (lx->p < lx->end && is_space(*lx->p))
		lx->p++;
	return lx->p == lx->end;
}

/* A run of letters (a compare target, a request), or "" (n 0). */
static const char *read_word(struct lex *lx, size_t *n)
{
	const char *b;

	at_end(lx);
	b = lx->p;
	while (lx->p < lx->end &&
	       ((*lx->p >= 'a' && *lx->p <= 'z') || (*lx->p >= 'A' && *lx->p <= 'Z')))
		lx->p++;
	*n = (size_t)(lx->p - b);
	return b;
}

static bool word_is(const char *w, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(w, s, n) == 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One escape after a backslash inside quotes, into *c. */
static int read_escape(struct lex *lx, const char *what, char *c)
{
	char e = *lx->p++;
	int hi, lo;

	switch (e) {
	case '"':
	case '\\':
		*c = e;
		return 0;
	case 'n':
		*c = '\n';
		return 0;
	case 't':
		*c = '\t';
		return 0;
	case 'r':
		*c = '\r';
		return 0;
	case 'x':
		hi = lx->end - lx->p >= 2 ? hex_digit(lx->p[0]) : -1;
		lo = hi >= 0 ? hex_digit(lx->p[1]) : -1;
		if (lo < 0)
			return syntax_error(lx, "\\x in %s wants two hex digits", what);
		lx->p += 2;
		*c = (char)(hi << 4 | lo);
		return 0;
	default:
		return syntax_error(
		    lx, "unknown escape '\\%c' in %s (use \\\" \\\\ \\n \\t \\r or \\xHH)",
		    is_space(e) ? ' ' : e, what);
	}
}

/*
 * A bare word (ended by a space, a quote or a character of stop) or a
 * quoted string, unquoted into the arena: *s NUL-terminated, *n bytes
 * (which may include NULs from \x00). what names it in errors.
 */
static int read_string(struct lex *lx, const char *stop, const char *what, const char **s,
		       size_t *n)
{
	char *o = lx->out;
	int rv;

	if (at_end(lx))
		return syntax_error(lx, "expected %s", what);
	if (*lx->p != '"') {
		const char *b = lx->p;

		while (lx->p < lx->end && !is_space(*lx->p) && *lx->p != '"' &&
		       !strchr(stop, *lx->p))
			lx->p++;
		if (lx->p == b)
			return syntax_error(lx, "expected %s, got '%c'", what, *lx->p);
		memcpy(o, b, (size_t)(lx->p - b));
		o += lx->p - b;
	} else {
		lx->p++;
		for (;;) {
			char c;

			if (lx->p == lx->end)
				return syntax_error(
				    lx, "unterminated quote in %s (a closing \" is missing)", what);
			c = *lx->p++;
			if (c == '"')
				break;
			if (c == '\\') {
				if (lx->p == lx->end)
					return syntax_error(
					    lx,
					    "unterminated quote in %s (a closing \" is "
					    "missing)",
					    what);
				rv = read_escape(lx, what, &c);
				if (rv)
					return rv;
			}
			*o++ = c;
		}
	}
	*n = (size_t)(o - lx->out);
	*o++ = 0;
	*s = lx->out;
	lx->out = o;
	return 0;
}

static int read_key(struct lex *lx, const char *stop, const char **key)
{
	size_t n;
	int rv = read_string(lx, stop, "a key", key, &n);

	if (rv)
		return rv;
	if (memchr(*key, 0, n))
		return syntax_error(lx, "a key cannot hold a NUL byte");
	if ((*key)[0] != '/')
		return syntax_error(lx, "keys are absolute paths (start with '/')");
	if (n > STORE_KEY_MAX)
		return syntax_error(lx, "key longer than %d bytes", STORE_KEY_MAX);
	return 0;
}

/* ---- compares ------------------------------------------------------------------ */

/* Every spelling etcdctl takes; errors use the first (full) one. */
static const struct {
	const char *name, *full;
	uint8_t target;
} targets[] = {
    {"value", "value", CLIENT_CMP_VALUE},
    {"val", "value", CLIENT_CMP_VALUE},
    {"version", "version", CLIENT_CMP_VERSION},
    {"ver", "version", CLIENT_CMP_VERSION},
    {"create", "create", CLIENT_CMP_CREATE},
    {"c", "create", CLIENT_CMP_CREATE},
    {"mod", "mod", CLIENT_CMP_MOD},
    {"m", "mod", CLIENT_CMP_MOD},
};

static const struct {
	const char *name;
	uint8_t op;
} operators[] = {
    {"=", CLIENT_CMP_EQ}, {"==", CLIENT_CMP_EQ}, {"!=", CLIENT_CMP_NE},
    {">", CLIENT_CMP_GT}, {"<", CLIENT_CMP_LT},
};

static int read_operator(struct lex *lx, uint8_t *op)
{
	const char *b;
	size_t n;

	at_end(lx);
	b = lx->p;
	while (lx->p < lx->end && *lx->p && strchr("=!<>", *lx->p))
		lx->p++;
	n = (size_t)(lx->p - b);
	for (size_t i = 0; i < sizeof(operators) / sizeof(operators[0]); i++) {
		if (word_is(b, n, operators[i].name)) {
			*op = operators[i].op;
			return 0;
		}
	}
	if (n)
		return syntax_error(lx, "unknown compare operator '%.*s' (want =, !=, > or <)",
				    (int)n, b);
	return syntax_error(lx, "expected a compare operator (=, !=, > or <) after the key");
}

/* s[0..n) has no control bytes: fit for an error line. */
static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int read_number(struct lex *lx, const char *name, const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10)
			return syntax_error(
			    lx, "%s compares with a number (0 to 2^64-1), got \"%.40s\"", name,
			    printable(s, n) ? s : "...");
		v = v * 10 + d;
	}
	if (n == 0)
		return syntax_error(lx, "%s compares with a number, got \"\"", name);
	*out = v;
	return 0;
}

static int parse_cmp(struct lex *lx, struct client_cmp *c)
{
	const char *w, *name = NULL, *v;
	size_t n, vlen;
	int rv;

	w = read_word(lx, &n);
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]) && !name; i++) {
		if (word_is(w, n, targets[i].name)) {
			name = targets[i].full;
			c->target = targets[i].target;
		}
	}
	if (!name && word_is(w, n, "lease"))
		return syntax_error(
		    lx, "lease compares are not supported (compare value, version, create "
			"or mod)");
	if (!name && n)
		return syntax_error(
		    lx,
		    "unknown compare '%.*s' (want value, version, create or mod, as in "
		    "mod(\"/k\") > \"12\"; a blank line ends the compares)",
		    (int)(n > 40 ? 40 : n), w);
	if (!name)
		return syntax_error(lx, "expected a compare, as in mod(\"/k\") > \"12\"");
	if (at_end(lx) || *lx->p != '(')
		return syntax_error(lx, "expected '(' after %s", name);
	lx->p++;
	rv = read_key(lx, "()", &c->key);
	if (rv)
		return rv;
	if (at_end(lx) || *lx->p != ')')
		return syntax_error(lx, "expected ')' after the key");
	lx->p++;
	rv = read_operator(lx, &c->op);
	if (!rv)
		rv = read_string(lx, "", "a value to compare with", &v, &vlen);
	if (rv)
		return rv;
	if (c->target == CLIENT_CMP_VALUE) {
		c->value = (const uint8_t *)v;
		c->value_len = vlen;
	} else if ((rv = read_number(lx, name, v, vlen, &c->num)) != 0) {
		return rv;
	}
	if (!at_end(lx))
		return syntax_error(lx, "expected the end of the line after the compare");
	return 0;
}

/* ---- requests ------------------------------------------------------------------ */

static int parse_op(struct lex *lx, struct client_txn_op *o)
{
	const char *w, *v;
	size_t n, vlen;
	int rv;

	w = read_word(lx, &n);
	if (word_is(w, n, "get"))
		return syntax_error(
		    lx, "get is not supported in a txn: the store's transactions compare "
			"and write, they do not read (use quorumfs get)");
	if (word_is(w, n, "put")) {
		o->type = CLIENT_TXN_PUT;
		if (!at_end(lx) && *lx->p == '-')
			return syntax_error(lx, "put takes no options in a txn");
		rv = read_key(lx, "", &o->key);
		if (!rv)
			rv = read_string(lx, "", "a value (put KEY VALUE)", &v, &vlen);
		if (rv)
			return rv;
		o->value = (const uint8_t *)v;
		o->value_len = vlen;
		if (!at_end(lx))
			return syntax_error(
			    lx, "expected the end of the line after the value (quote a value "
				"with spaces: \"a b\")");
		return 0;
	}
	if (word_is(w, n, "del")) {
		o->type = CLIENT_TXN_DEL;
		if (!at_end(lx) && *lx->p == '-') {
			const char *f = lx->p;

			while (lx->p < lx->end && !is_space(*lx->p))
				lx->p++;
			if (!word_is(f, (size_t)(lx->p - f), "--prefix"))
				return syntax_error(lx,
						    "unknown option '%.*s' for del (want --prefix)",
						    (int)(lx->p - f > 40 ? 40 : lx->p - f), f);
			o->flags = CLIENT_DEL_PREFIX;
		}
		rv = read_key(lx, "", &o->key);
		if (rv)
			return rv;
		if (!at_end(lx))
			return syntax_error(lx, "expected the end of the line after the key");
		return 0;
	}
	if (n)
		return syntax_error(
		    lx, "unknown request '%.*s' (want put KEY VALUE or del [--prefix] KEY)",
		    (int)(n > 40 ? 40 : n), w);
	return syntax_error(lx, "expected a request: put KEY VALUE or del [--prefix] KEY");
}

/* ---- the blocks ---------------------------------------------------------------- */

static const char *const block_names[] = {"compares", "success requests", "failure requests"};

int txn_text_parse(const char *text, size_t len, struct txn_text *out, char *err, size_t errlen)
{
	struct lex lx = {.err = err, .errlen = errlen};
	const char *p = text, *end = text + len;
	int block = 0, rv = 0;

	memset(out, 0, sizeof(*out));
	if (len > (SIZE_MAX - 16) / 2)
		return QFS_ENOMEM;
	out->arena_ = malloc(2 * len + 16);
	out->cmps = calloc(CLIENT_PROTO_TXN_MAX, sizeof(*out->cmps));
	out->ops[0] = calloc(CLIENT_PROTO_TXN_MAX, sizeof(*out->ops[0]));
	out->ops[1] = calloc(CLIENT_PROTO_TXN_MAX, sizeof(*out->ops[1]));
	if (!out->arena_ || !out->cmps || !out->ops[0] || !out->ops[1]) {
		txn_text_free(out);
		snprintf(err, errlen, "out of memory");
		return QFS_ENOMEM;
	}
	lx.out = out->arena_;
	while (p < end && !rv) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		lx.line++;
		lx.p = p;
		lx.end = nl ? nl : end;
		p = nl ? nl + 1 : end;
		if (memchr(lx.p, 0, (size_t)(lx.end - lx.p))) {
			rv = syntax_error(
			    &lx, "a NUL byte in the input (write it as \\x00 inside quotes)");
		} else if (at_end(&lx)) {
			if (block < 3)
				block++;
		} else if (block == 3) {
			rv = syntax_error(
			    &lx, "text after the failure requests (the input is three blocks: "
				 "compares, success requests, failure requests, each ended by "
				 "a blank line)");
		} else if (block == 0) {
			if (out->ncmps == CLIENT_PROTO_TXN_MAX)
				rv = syntax_error(&lx, "more than %d compares",
						  CLIENT_PROTO_TXN_MAX);
			else
				rv = parse_cmp(&lx, &out->cmps[out->ncmps++]);
		} else {
			size_t *n = &out->nops[block - 1];

			if (*n == CLIENT_PROTO_TXN_MAX)
				rv = syntax_error(&lx, "more than %d %s", CLIENT_PROTO_TXN_MAX,
						  block_names[block]);
			else
				rv = parse_op(&lx, &out->ops[block - 1][(*n)++]);
		}
	}
	if (rv)
		txn_text_free(out);
	return rv;
}

void txn_text_free(struct txn_text *t)
{
	free(t->arena_);
	free(t->cmps);
	free(t->ops[0]);
	free(t->ops[1]);
	memset(t, 0, sizeof(*t));
}
