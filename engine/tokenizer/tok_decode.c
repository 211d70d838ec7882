/* Tokenizer: decoding ids to bytes, and the incremental detokenizer that
 * hands out only complete UTF-8 for streaming. */
#include "tok-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- whole sequences --------------------------------------------------------------- */

/* Whether the first non-empty piece loses its leading space. */
static bool strips(const struct tokenizer *t, unsigned flags)
{
	return (flags & TOK_DECODE_STRIP_LEADING) && t->kind == TOK_KIND_SPM && t->add_space_prefix;
}

int tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
               char *out, size_t cap, size_t *len)
{
	bool strip = strips(t, flags);
	size_t o = 0;

	*len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t pl;
		const char *p = tok_token_piece(t, ids[i], flags, &pl);
		if (p == NULL)
			return -EINVAL;
		if (pl == 0)
			continue;
		if (strip && p[0] == ' ') {
			p++;
			pl--;
		}
		strip = false;
		if (pl == 0)
			continue;
		if (o + pl <= cap)
			memcpy(out + o, p, pl);
		else if (o < cap)
			memcpy(out + o, p, cap - o);
		o += pl;
	}
	*len = o;
	return o > cap ? -ENOBUFS : 0;
}

/* ---- the incremental detokenizer --------------------------------------------------- */

struct tok_stream {
	const struct tokenizer *t;
	unsigned flags;
	bool strip;            /* the next non-empty piece is the first */
	unsigned char held[4]; /* an incomplete UTF-8 sequence */
	size_t n_held;
	char *buf;             /* output of the last call */
	size_t cap;
};

struct tok_stream *tok_stream_new(const struct tokenizer *t, unsigned flags)
{
	struct tok_stream *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->t = t;
	s->flags = flags;
	s->strip = strips(t, flags);
	return s;
}

void tok_stream_free(struct tok_stream *s)
{
	if (s == NULL)
		return;
	free(s->buf);
	free(s);
}

void tok_stream_reset(struct tok_stream *s)
{
	s->strip = strips(s->t, s->flags);
	s->n_held = 0;
}

size_t tok_stream_pending(const struct tok_stream *s)
{
	return s->n_held;
}

static int reserve(struct tok_stream *s, size_t need)
{
	if (need <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 64;
	while (cap < need)
		cap *= 2;
	char *b = realloc(s->buf, cap);
	if (b == NULL)
		return -ENOMEM;
	s->buf = b;
	s->cap = cap;
	return 0;
}

static const char replacement[3] = { '\xef', '\xbf', '\xbd' }; /* U+FFFD */

/* Appends byte c to the held bytes and moves whatever became decidable to the
 * output at *o: complete sequences as they are, and each maximal invalid
 * subpart as one U+FFFD (as Python's errors="replace" does). Invariant: the
 * held bytes are a valid but incomplete sequence. */
static void push_byte(struct tok_stream *s, unsigned char c, size_t *o)
{
	s->held[s->n_held++] = c;
	while (s->n_held) {
		bool inc;
		size_t n = tok_utf8_check(s->held, s->n_held, &inc);
		if (inc)
			return; /* wait for more */
		if (n == 0) {
			memcpy(s->buf + *o, replacement, 3);
			*o += 3;
			/* the bytes before c were a valid prefix: one U+FFFD for them, retry c */
			n = s->n_held > 1 ? s->n_held - 1 : 1;
		} else {
			memcpy(s->buf + *o, s->held, n);
			*o += n;
		}
		memmove(s->held, s->held + n, s->n_held - n);
		s->n_held -= n;
	}
}

int tok_stream_feed(struct tok_stream *s, int32_t id, const char **text, size_t *len)
{
	size_t pl;
	const char *p = tok_token_piece(s->t, id, s->flags, &pl);

	*text = "";
	*len = 0;
	if (p == NULL)
		return -EINVAL;
	if (pl && s->strip && p[0] == ' ') {
		p++;
		pl--;
	}
	if (pl)
		s->strip = false;
	/* Worst case: every held and new byte comes out as 3-byte U+FFFD. */
	if (reserve(s, 3 * (pl + s->n_held) + 1) < 0)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < pl; i++)
		push_byte(s, (unsigned char)p[i], &o);
	*text = s->buf;
	*len = o;
	return 0;
}

int tok_stream_flush(struct tok_stream *s, const char **text, size_t *len)
{
	*text = "";
	*len = 0;
	if (reserve(s, 3 * s->n_held + 1) < 0)
		return -ENOMEM;
	size_t o = 0;
	if (s->n_held) { /* a valid prefix that can no longer complete */
		memcpy(s->buf, replacement, 3);
		o = 3;
		s->n_held = 0;
	}
	*text = s->buf;
	*len = o;
	s->strip = strips(s->t, s->flags);
	return 0;
}
