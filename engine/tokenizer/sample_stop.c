/* Stop strings matched across token boundaries on the detokenized text: text
 * that could still be the start of a stop string is held back, released when
 * the continuation rules it out, and the stop string itself is never passed on.
 * Matching is naive (every start position against every stop string): stop
 * strings are few and short, and the held text is shorter than the longest. */
#include "sample.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct stop_matcher {
	char **stops;
	size_t *lens;
	size_t n;
	char *buf;     /* held text followed by the new text */
	size_t len, cap;
	size_t held;   /* bytes of buf held back after the last call */
	bool stopped;
};

struct stop_matcher *stop_matcher_new(const char *const *stops, size_t n)
{
	struct stop_matcher *m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	m->stops = calloc(n ? n : 1, sizeof *m->stops);
	m->lens = calloc(n ? n : 1, sizeof *m->lens);
	if (m->stops == NULL || m->lens == NULL)
		goto fail;
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		m->lens[i] = stops[i] ? strlen(stops[i]) : 0;
		if (m->lens[i] == 0 || (m->stops[i] = strdup(stops[i])) == NULL)
			goto fail;
	}
	return m;
fail:
	stop_matcher_free(m);
	return NULL;
}

void stop_matcher_free(struct stop_matcher *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; m->stops && i < m->n; i++)
		free(m->stops[i]);
	free(m->stops);
	free(m->lens);
	free(m->buf);
	free(m);
}

size_t stop_matcher_pending(const struct stop_matcher *m)
{
	return m->held;
}

/* Length of the longest suffix of s[0..len) that is a proper prefix of a stop string. */
static size_t partial_tail(const struct stop_matcher *m, const char *s, size_t len)
{
	size_t best = 0;
	for (size_t i = 0; i < m->n; i++) {
		size_t k = m->lens[i] - 1 < len ? m->lens[i] - 1 : len;
		for (; k > best; k--)
			if (memcmp(s + len - k, m->stops[i], k) == 0) {
				best = k;
				break;
			}
	}
	return best;
}

int stop_matcher_feed(struct stop_matcher *m, const char *text, size_t len, const char **out,
                      size_t *out_len, size_t *which)
{
	*out = "";
	*out_len = 0;
	if (m->stopped)
		return 1;
	/* Drop what was handed out last time; keep the held tail at the front. */
	if (m->held && m->len > m->held)
		memmove(m->buf, m->buf + m->len - m->held, m->held);
	m->len = m->held;
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 64;
		while (cap < m->len + len)
			cap *= 2;
		char *b = realloc(m->buf, cap);
		if (b == NULL)
			return -ENOMEM;
		m->buf = b;
		m->cap = cap;
	}
	if (len)
		memcpy(m->buf + m->len, text, len);
	m->len += len;

	/* The earliest complete stop string (the held part alone holds none). */
	for (size_t pos = 0; pos < m->len; pos++)
		for (size_t i = 0; i < m->n; i++)
			if (m->lens[i] <= m->len - pos && memcmp(m->buf + pos, m->stops[i], m->lens[i]) == 0) {
				m->stopped = true;
				m->held = 0;
				*out = m->buf;
				*out_len = pos;
				if (which)
					*which = i;
				return 1;
			}
	m->held = partial_tail(m, m->buf, m->len);
	*out = m->buf;
	*out_len = m->len - m->held;
	return 0;
}

int stop_matcher_flush(struct stop_matcher *m, const char **out, size_t *out_len)
{
	*out = "";
	*out_len = 0;
	if (m->stopped || m->held == 0)
		return 0;
	*out = m->buf + m->len - m->held;
	*out_len = m->held;
	m->held = 0;
	m->len = 0;
	return 0;
}
