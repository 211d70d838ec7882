/* Generated tokenizer vocabularies for inferd-mkmodel.
 *
 * Both kinds grow from the same list of raw pieces (byte strings, ' ' standing
 * for a word boundary): a small built-in English word list and all its
 * prefixes, then padding pieces " ab", " abc"... until the vocabulary is full.
 * The list is prefix-closed in order: every piece of two or more bytes appears
 * after the piece that is its first n-1 bytes, so that
 *  - SentencePiece ("llama"): the piece can be reached by merging its prefix
 *    and its last character; ' ' is written as U+2581;
 *  - byte-level BPE ("gpt2"): the merge "prefix last" produces it, and merges
 *    are listed in the order tokens are created (rank order), each token
 *    being exactly the concatenation of its merge pair after the GPT-2
 *    byte-to-unicode mapping (' ' becomes U+0120).
 */
#include "mkmodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
	"the", "a", "and", "to", "was", "he", "she", "it", "of", "in", "they", "her", "his",
	"that", "with", "said", "on", "you", "for", "had", "big", "little", "day", "one",
	"time", "upon", "once", "there", "girl", "boy", "happy", "play", "friend", "mom",
	"dad", "dog", "cat", "tree", "sun", "ball", "went", "saw", "wanted", "very", "so",
	"but", "not", "is", "are", "were", "be", "have", "do", "go", "see", "can", "we",
	"all", "at", "up", "out", "what", "when", "then", "from", "like", "look", "good",
	"new", "name", "help", "home", "park", "toy", "fun", "red", "blue", "green", "bird",
	"fish", "water", "food", "love", "smile", "run", "jump", "sky", "house", "car",
	"book", "story", "kind", "nice", "sad", "made", "make", "came", "come", "found",
	"find", "would", "could", "back", "away", "too", "them", "him", "me", "my", "your",
	"our", "this", "no", "yes", "did", "get", "got", "took", "take", "felt", "feel",
	"hug", "hello", "thank", "together", "after", "before", "again", "every", "some",
	"many", "lot", "best", "garden", "flower", "rain", "snow", "cake", "bed", "night",
	"morning", "walk", "talk", "laugh", "share", "learn", "school", "teacher",
};

/* ---- a set of strings (open addressing) ------------------------------------------ */

struct strset {
	char **slots;
	size_t mask;
};

static size_t hash_str(const char *s)
{
	size_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int set_init(struct strset *s, size_t n)
{
	size_t cap = 64;
	while (cap < 2 * n)
		cap <<= 1;
	s->slots = calloc(cap, sizeof *s->slots);
	s->mask = cap - 1;
	return s->slots ? 0 : -ENOMEM;
}

/* true when added, false when already present. */
static bool set_add(struct strset *s, char *str)
{
	size_t h = hash_str(str) & s->mask;
	for (; s->slots[h]; h = (h + 1) & s->mask)
		if (strcmp(s->slots[h], str) == 0)
			return false;
	s->slots[h] = str;
	return true;
}

/* ---- raw pieces ----------------------------------------------------------------- */

struct pieces {
	char **v;          /* raw byte strings, owned */
	size_t n, want;
	struct strset set;
	int err;
};

static void piece_add(struct pieces *p, const char *s, size_t len)
{
	if (p->err || p->n >= p->want)
		return;
	char *d = malloc(len + 1);
	if (d == NULL) {
		p->err = -ENOMEM;
		return;
	}
	memcpy(d, s, len);
	d[len] = '\0';
	if (set_add(&p->set, d))
		p->v[p->n++] = d;
	else
		free(d);
}

/* " " + every string of k lowercase letters, k = 2, 3..., until full. */
static void add_padding(struct pieces *p)
{
	char buf[16];
	for (int k = 2; k <= 6 && p->n < p->want && !p->err; k++) {
		size_t total = 1;
		for (int i = 0; i < k; i++)
			total *= 26;
		for (size_t c = 0; c < total && p->n < p->want && !p->err; c++) {
			size_t x = c;
			buf[0] = ' ';
			for (int i = k; i >= 1; i--, x /= 26)
				buf[i] = (char)('a' + x % 26);
			piece_add(p, buf, (size_t)k + 1);
		}
	}
}

static void add_word_prefixes(struct pieces *p, bool with_space, size_t kmin)
{
	char buf[64];
	size_t nw = sizeof words / sizeof words[0];
	for (size_t w = 0; w < nw; w++) {
		size_t len = strlen(words[w]);
		for (size_t k = kmin; k <= len; k++) {
			size_t o = 0;
			if (with_space)
				buf[o++] = ' ';
			memcpy(buf + o, words[w], k);
			piece_add(p, buf, o + k);
		}
	}
}

/* ---- SentencePiece ---------------------------------------------------------------- */

static char *spm_text(const char *raw)
{
	size_t n = 0;
	for (const char *s = raw; *s; s++)
		n += *s == ' ' ? 3 : 1;
	char *out = malloc(n + 1), *o = out;
	if (out == NULL)
		return NULL;
	for (const char *s = raw; *s; s++) {
		if (*s == ' ') {
			memcpy(o, "\xe2\x96\x81", 3); /* U+2581 LOWER ONE EIGHTH BLOCK */
			o += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

static void spm_pieces(struct pieces *p)
{
	static const char singles[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()";
	piece_add(p, " ", 1);
	for (const char *c = singles; *c; c++)
		piece_add(p, c, 1);
	add_word_prefixes(p, true, 1);
	for (char c = 'a'; c <= 'z'; c++) {
		char b[2] = { ' ', c };
		piece_add(p, b, 2);
	}
	add_padding(p);
}

/* ---- byte-level BPE ----------------------------------------------------------------- */

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 + their rank among those bytes. */
static unsigned byte_cp(unsigned b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	unsigned n = 0;
	for (unsigned c = 0; c < b; c++)
		if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174))
			n++;
	return 256 + n;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	o[0] = (char)(0xc0 | (cp >> 6));
	o[1] = (char)(0x80 | (cp & 0x3f));
	return 2; /* every code point of the table is below U+0800 */
}

static char *bpe_text(const char *raw, size_t len)
{
	char *out = malloc(2 * len + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i++)
		o += put_utf8(out + o, byte_cp((unsigned char)raw[i]));
	out[o] = '\0';
	return out;
}

static void bpe_pieces(struct pieces *p)
{
	for (char c = 'a'; c <= 'z'; c++) {
		char b[2] = { ' ', c };
		piece_add(p, b, 2);
	}
	add_word_prefixes(p, true, 1);
	add_word_prefixes(p, false, 2);
	add_padding(p);
}

/* ---- the vocabulary ---------------------------------------------------------------- */

void mk_vocab_fini(struct mk_vocab *v)
{
	if (v->tokens)
		for (size_t i = 0; i < v->n; i++)
			free(v->tokens[i]);
	if (v->merges)
		for (size_t i = 0; i < v->n_merges; i++)
			free(v->merges[i]);
	free(v->tokens);
	free(v->scores);
	free(v->types);
	free(v->merges);
	memset(v, 0, sizeof *v);
}

static int fill_spm(struct mk_vocab *v, struct pieces *p)
{
	static const char *const special[3] = { "<unk>", "<s>", "</s>" };
	static const int32_t stype[3] = { MK_TOKEN_UNKNOWN, MK_TOKEN_CONTROL, MK_TOKEN_CONTROL };
	size_t id = 0;
	for (; id < 3; id++) {
		v->tokens[id] = strdup(special[id]);
		v->types[id] = stype[id];
	}
	for (unsigned b = 0; b < 256; b++, id++) {
		char buf[8];
		snprintf(buf, sizeof buf, "<0x%02X>", b);
		v->tokens[id] = strdup(buf);
		v->types[id] = MK_TOKEN_BYTE;
	}
	for (size_t i = 0; i < p->n; i++, id++) {
		v->tokens[id] = spm_text(p->v[i]);
		v->types[id] = MK_TOKEN_NORMAL;
		v->scores[id] = -(float)i; /* earlier (shorter, more common) pieces merge first */
	}
	v->unk = 0;
	v->bos = 1;
	v->eos = 2;
	v->pad = -1;
	for (size_t i = 0; i < v->n; i++)
		if (v->tokens[i] == NULL)
			return -ENOMEM;
	return 0;
}

static int fill_bpe(struct mk_vocab *v, struct pieces *p)
{
	size_t id = 0;
	for (unsigned b = 0; b < 256; b++, id++) {
		char c = (char)b;
		v->tokens[id] = bpe_text(&c, 1);
		v->types[id] = MK_TOKEN_NORMAL;
		if (v->tokens[id] == NULL)
			return -ENOMEM;
	}
	v->merges = calloc(p->n ? p->n : 1, sizeof *v->merges);
	if (v->merges == NULL)
		return -ENOMEM;
	v->n_merges = p->n;
	for (size_t i = 0; i < p->n; i++, id++) {
		size_t len = strlen(p->v[i]);
		char *left = bpe_text(p->v[i], len - 1);
		char *right = bpe_text(p->v[i] + len - 1, 1);
		v->tokens[id] = bpe_text(p->v[i], len);
		v->merges[i] = left && right ? malloc(strlen(left) + strlen(right) + 2) : NULL;
		if (v->merges[i])
			sprintf(v->merges[i], "%s %s", left, right);
		free(left);
		free(right);
		if (v->tokens[id] == NULL || v->merges[i] == NULL)
			return -ENOMEM;
		v->types[id] = MK_TOKEN_NORMAL;
		v->scores[id] = -(float)i;
	}
	v->tokens[id] = strdup("<|endoftext|>");
	v->types[id] = MK_TOKEN_CONTROL;
	if (v->tokens[id] == NULL)
		return -ENOMEM;
	v->bos = v->eos = v->pad = (int32_t)id;
	v->unk = -1;
	return 0;
}

int mk_vocab_build(struct mk_vocab *v, bool bpe, size_t n)
{
	struct pieces p = { 0 };
	int rc = -ENOMEM;

	memset(v, 0, sizeof *v);
	if (n < MK_VOCAB_MIN || n > MK_VOCAB_MAX)
		return -EINVAL;
	p.want = bpe ? n - 257 : n - 259;
	p.v = calloc(p.want, sizeof *p.v);
	v->tokens = calloc(n, sizeof *v->tokens);
	v->scores = calloc(n, sizeof *v->scores);
	v->types = calloc(n, sizeof *v->types);
	if (p.v == NULL || v->tokens == NULL || v->scores == NULL || v->types == NULL ||
	    set_init(&p.set, p.want) < 0)
		goto out;
	v->n = n;
	if (bpe)
		bpe_pieces(&p);
	else
		spm_pieces(&p);
	if (p.err)
		goto out;
	if (p.n != p.want) { /* the padding generator ran dry: cannot happen below MK_VOCAB_MAX */
		rc = -EINVAL;
		goto out;
	}
	rc = bpe ? fill_bpe(v, &p) : fill_spm(v, &p);
out:
	if (p.v)
		for (size_t i = 0; i < p.n; i++)
			free(p.v[i]);
	free(p.v);
	free(p.set.slots);
	if (rc < 0)
		mk_vocab_fini(v);
	return rc;
}
