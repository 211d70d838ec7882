/* SentencePiece-style BPE (llama.cpp's llm_tokenizer_spm): characters are
 * merged pairwise, always the adjacent pair whose concatenation is the token
 * with the highest score (ties: the leftmost pair), until no adjacent pair
 * forms a token. A max-heap of candidate pairs keeps this O(n log n); entries
 * made stale by an earlier merge are recognised by their size and skipped. */
#include "tok-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sym {
	int32_t prev, next; /* linked list of live symbols; -1 at the ends */
	uint32_t off, n;    /* bytes of the escaped text; n == 0 once merged away */
};

struct bigram {
	float score;
	int32_t left, right;
	uint32_t size; /* bytes of the pair when it was queued */
};

struct heap {
	struct bigram *v;
	size_t n, cap;
};

/* a ranks before b: higher score, then the leftmost pair. */
static bool before(const struct bigram *a, const struct bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct heap *h, struct bigram b)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 64;
		struct bigram *v = realloc(h->v, cap * sizeof *v);
		if (v == NULL)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(&b, &h->v[p]))
			break;
		h->v[i] = h->v[p];
		i = p;
	}
	h->v[i] = b;
	return 0;
}

static struct bigram heap_pop(struct heap *h)
{
	struct bigram top = h->v[0], last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
			c++;
		if (!before(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static int try_pair(const struct tokenizer *t, const char *s, const struct sym *sy,
                    int32_t l, int32_t r, struct heap *h)
{
	if (l < 0 || r < 0)
		return 0;
	uint32_t size = sy[l].n + sy[r].n;
	int32_t id = tok_lookup(t, s + sy[l].off, size);
	if (id < 0)
		return 0;
	return heap_push(h, (struct bigram){ .score = t->scores[id], .left = l, .right = r, .size = size });
}

/* Emits a final symbol: its token, else its bytes as byte tokens, else <unk>. */
static void emit(const struct tokenizer *t, const char *s, size_t n, struct tok_out *out)
{
	int32_t id = tok_lookup(t, s, n);
	if (id >= 0) {
		tok_out_push(out, id);
		return;
	}
	bool bytes = true;
	for (size_t i = 0; i < n; i++)
		bytes = bytes && t->byte_tok[(unsigned char)s[i]] >= 0;
	if (bytes) {
		for (size_t i = 0; i < n; i++)
			tok_out_push(out, t->byte_tok[(unsigned char)s[i]]);
	} else if (t->unk >= 0) {
		tok_out_push(out, t->unk);
	}
}

int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool space_prefix,
                   struct tok_out *out)
{
	int rc = -ENOMEM;
	struct heap h = { 0 };
	struct sym *sy = NULL;

	/* Escape: optional U+2581 prefix, every ' ' -> U+2581. */
	size_t cap = 3 * len + 3;
	char *s = malloc(cap);
	if (s == NULL)
		return -ENOMEM;
	size_t n = 0;
	if (space_prefix) {
		memcpy(s, "\xe2\x96\x81", 3);
		n = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(s + n, "\xe2\x96\x81", 3);
			n += 3;
		} else {
			s[n++] = text[i];
		}
	}
	if (n == 0) {
		rc = 0;
		goto out;
	}

	/* One symbol per UTF-8 character; an invalid byte is a character of its own. */
	sy = malloc(n * sizeof *sy);
	if (sy == NULL)
		goto out;
	int32_t ns = 0;
	for (size_t i = 0; i < n;) {
		size_t l = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
		if (l == 0)
			l = 1;
		sy[ns] = (struct sym){ .prev = ns - 1, .next = ns + 1, .off = (uint32_t)i, .n = (uint32_t)l };
		ns++;
		i += l;
	}
	sy[ns - 1].next = -1;

	for (int32_t i = 1; i < ns; i++)
		if ((rc = try_pair(t, s, sy, i - 1, i, &h)) < 0)
			goto out;
	while (h.n) {
		struct bigram b = heap_pop(&h);
		struct sym *l = &sy[b.left], *r = &sy[b.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue; /* stale: one side merged since */
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			sy[r->next].prev = b.left;
		if ((rc = try_pair(t, s, sy, l->prev, b.left, &h)) < 0 ||
		    (rc = try_pair(t, s, sy, b.left, l->next, &h)) < 0)
			goto out;
	}
	for (int32_t i = 0; i >= 0; i = sy[i].next)
		emit(t, s + sy[i].off, sy[i].n, out);
	rc = 0;
out:
	free(h.v);
	free(sy);
	free(s);
	return rc;
}
