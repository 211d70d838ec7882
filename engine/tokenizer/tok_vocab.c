/* Tokenizer: loading the vocabulary from GGUF, the text -> id map, decoded
 * pieces, special and end-of-generation tokens. */
#include "tok-internal.h"

#include "gguf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- UTF-8 ----------------------------------------------------------------------- */

size_t tok_utf8_check(const unsigned char *s, size_t len, bool *incomplete)
{
	*incomplete = false;
	if (len == 0)
		return 0;
	unsigned c = s[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0) {
		n = 2;
	} else if (c < 0xf0) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c < 0xf5) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if (i >= len) {
			*incomplete = true;
			return n;
		}
		unsigned b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80)
			return 0;
	}
	return n;
}

size_t tok_utf8_valid_len(const unsigned char *s, size_t len)
{
	bool inc;
	size_t n = tok_utf8_check(s, len, &inc);
	return inc ? 0 : n;
}

/* ---- the text -> id map ---------------------------------------------------------- */

int32_t tok_lookup(const struct tokenizer *t, const char *s, size_t len)
{
	uint32_t h = tok_hash(s, len) & t->map_mask;
	for (;; h = (h + 1) & t->map_mask) {
		int32_t v = t->map[h];
		if (v == 0)
			return -1;
		size_t tl;
		const char *tt = tok_text(t, v - 1, &tl);
		if (tl == len && memcmp(tt, s, len) == 0)
			return v - 1;
	}
}

static int build_map(struct tokenizer *t)
{
	uint32_t cap = 16;
	while (cap < 2u * (uint32_t)t->n_vocab)
		cap <<= 1;
	t->map = calloc(cap, sizeof *t->map);
	if (t->map == NULL)
		return -ENOMEM;
	t->map_mask = cap - 1;
	for (int32_t id = 0; id < t->n_vocab; id++) {
		size_t len;
		const char *s = tok_text(t, id, &len);
		uint32_t h = tok_hash(s, len) & t->map_mask;
		bool dup = false;
		for (; t->map[h]; h = (h + 1) & t->map_mask) {
			size_t ol;
			const char *os = tok_text(t, t->map[h] - 1, &ol);
			if (ol == len && memcmp(os, s, len) == 0) {
				dup = true; /* the first id with a text wins, as in llama.cpp */
				break;
			}
		}
		if (!dup)
			t->map[h] = id + 1;
	}
	return 0;
}

/* ---- decoded pieces -------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The byte of an SPM "<0xXX>" text, or -1. */
static int spm_byte_of(const char *s, size_t len)
{
	if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	int a = hexval(s[3]), b = hexval(s[4]);
	return a < 0 || b < 0 ? -1 : a * 16 + b;
}

/* Appends the decoded bytes of token id to buf at *o (buf holds at least
 * text length + 3 bytes per token: decoding never grows a piece more). */
static void put_piece(const struct tokenizer *t, int32_t id, const int16_t *inv, char *buf,
                      size_t *o)
{
	size_t len;
	const char *s = tok_text(t, id, &len);
	enum tok_type ty = t->types[id];

	if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNUSED)
		return;
	if (ty == TOK_TYPE_UNKNOWN) {
		memcpy(buf + *o, "\xe2\x96\x85", 3); /* U+2585, as llama.cpp renders <unk> */
		*o += 3;
		return;
	}
	if (ty == TOK_TYPE_USER_DEFINED) {
		memcpy(buf + *o, s, len);
		*o += len;
		return;
	}
	if (t->kind == TOK_KIND_SPM) {
		int b = ty == TOK_TYPE_BYTE ? spm_byte_of(s, len) : -1;
		if (b >= 0) {
			buf[(*o)++] = (char)b;
			return;
		}
		for (size_t i = 0; i < len; i++) {
			if (i + 2 < len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
				buf[(*o)++] = ' ';
				i += 2;
			} else {
				buf[(*o)++] = s[i];
			}
		}
		return;
	}
	/* BPE: every code point of the byte table stands for its byte; others are
	 * copied as they are. */
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		size_t n = tok_utf8_valid_len(u + i, len - i);
		if (n == 0) {
			buf[(*o)++] = s[i++];
			continue;
		}
		uint32_t cp = n == 1 ? u[i] : n == 2 ? ((u[i] & 0x1fu) << 6) | (u[i + 1] & 0x3fu) : 0;
		int byte = n <= 2 && cp < 0x144 ? inv[cp] : -1;
		if (byte >= 0) {
			buf[(*o)++] = (char)byte;
		} else {
			memcpy(buf + *o, s + i, n);
			*o += n;
		}
		i += n;
	}
}

static int build_pieces(struct tokenizer *t)
{
	size_t total = (size_t)t->text_off[t->n_vocab] + 3u * (size_t)t->n_vocab;
	t->piece = malloc(total ? total : 1);
	t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
	if (t->piece == NULL || t->piece_off == NULL)
		return -ENOMEM;
	int16_t inv[0x144]; /* code point -> byte of the GPT-2 table, -1 */
	for (unsigned c = 0; c < 0x144; c++)
		inv[c] = -1;
	for (unsigned b = 0; b < 256; b++)
		inv[tok_bpe_byte_cp(b)] = (int16_t)b;
	size_t o = 0;
	for (int32_t id = 0; id < t->n_vocab; id++) {
		t->piece_off[id] = (uint32_t)o;
		put_piece(t, id, inv, t->piece, &o);
	}
	t->piece_off[t->n_vocab] = (uint32_t)o;
	return 0;
}

/* ---- special and end-of-generation tokens ---------------------------------------- */

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int build_special(struct tokenizer *t)
{
	static const char *const eog_names[] = {
		"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
		"<|eom_id|>", "<EOT>", "</s>",
	};
	t->special = malloc(((size_t)t->n_vocab + 1) * sizeof *t->special);
	t->eog = malloc(((size_t)t->n_vocab + 4) * sizeof *t->eog);
	if (t->special == NULL || t->eog == NULL)
		return -ENOMEM;
	for (int32_t id = 0; id < t->n_vocab; id++) {
		enum tok_type ty = t->types[id];
		size_t len;
		const char *s = tok_text(t, id, &len);
		if (len && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN ||
		            ty == TOK_TYPE_USER_DEFINED)) {
			t->special[t->n_special++] = id;
		}
		bool eog = id == t->eos || id == t->eot || id == t->eom;
		if (ty == TOK_TYPE_CONTROL)
			for (size_t k = 0; k < sizeof eog_names / sizeof eog_names[0]; k++)
				if (strlen(eog_names[k]) == len && memcmp(eog_names[k], s, len) == 0)
					eog = true;
		if (eog)
			t->eog[t->n_eog++] = id;
	}
	/* By first byte, then longest text first, then lowest id: sort keys
	 * (first byte << 56 | (2^24 - 1 - len) << 32 | id); texts are < 2 GiB in
	 * all but 16 MiB is plenty for one special token. */
	uint64_t *keys = malloc(((size_t)t->n_special + 1) * sizeof *keys);
	if (keys == NULL)
		return -ENOMEM;
	for (int32_t i = 0; i < t->n_special; i++) {
		size_t len;
		const char *s = tok_text(t, t->special[i], &len);
		uint64_t l = len < 0xffffff ? len : 0xffffff;
		keys[i] = ((uint64_t)(unsigned char)s[0] << 56) | ((0xffffffu - l) << 32) |
		          (uint32_t)t->special[i];
	}
	qsort(keys, (size_t)t->n_special, sizeof *keys, u64_cmp);
	int32_t b = 0;
	for (int32_t i = 0; i < t->n_special; i++) {
		int32_t first = (int32_t)(keys[i] >> 56);
		while (b <= first)
			t->special_start[b++] = i;
		t->special[i] = (int32_t)(keys[i] & 0xffffffffu);
	}
	while (b <= 256)
		t->special_start[b++] = t->n_special;
	free(keys);
	return 0;
}

/* ---- loading --------------------------------------------------------------------- */

static int32_t get_id(const struct gguf *g, const char *key, int32_t n, int32_t dflt)
{
	uint32_t v;
	if (gguf_get_uint32(g, key, &v) < 0)
		return dflt;
	return v < (uint32_t)n ? (int32_t)v : -1;
}

static bool get_flag(const struct gguf *g, const char *key, bool dflt)
{
	bool v;
	return gguf_get_bool(g, key, &v) == 0 ? v : dflt;
}

static int load_tokens(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
{
	const struct gguf_arr *toks, *a;
	if (gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) < 0 ||
	    gguf_arr_type(toks) != GGUF_VTYPE_STRING)
		return fail(err, errlen, -EINVAL, "tokenizer.ggml.tokens: missing or not a string array");
	uint64_t n = gguf_arr_len(toks);
	if (n == 0 || n > (uint64_t)INT32_MAX / 4)
		return fail(err, errlen, -EINVAL, "tokenizer.ggml.tokens: %llu tokens",
		            (unsigned long long)n);
	t->n_vocab = (int32_t)n;
	size_t total = 0;
	for (uint64_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		gguf_arr_get_str(toks, i, &s, &len);
		total += len + 1;
	}
	if (total > UINT32_MAX / 2)
		return fail(err, errlen, -EINVAL, "tokenizer.ggml.tokens: texts too long");
	t->text = malloc(total);
	t->text_off = malloc((n + 1) * sizeof *t->text_off);
	t->scores = calloc(n, sizeof *t->scores);
	t->types = malloc(n);
	if (!t->text || !t->text_off || !t->scores || !t->types)
		return -ENOMEM;
	size_t o = 0;
	for (uint64_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		gguf_arr_get_str(toks, i, &s, &len);
		t->text_off[i] = (uint32_t)o;
		memcpy(t->text + o, s, len);
		t->text[o + len] = '\0';
		o += len + 1;
		t->types[i] = TOK_TYPE_NORMAL;
	}
	t->text_off[n] = (uint32_t)o;

	if (gguf_get_arr(g, "tokenizer.ggml.scores", &a) == 0) {
		if (gguf_arr_len(a) != n)
			return fail(err, errlen, -EINVAL, "tokenizer.ggml.scores: %llu values for %llu tokens",
			            (unsigned long long)gguf_arr_len(a), (unsigned long long)n);
		for (uint64_t i = 0; i < n; i++)
			if (gguf_arr_get_f32(a, i, &t->scores[i]) < 0)
				return fail(err, errlen, -EINVAL, "tokenizer.ggml.scores: not a float array");
	}
	if (gguf_get_arr(g, "tokenizer.ggml.token_type", &a) == 0) {
		if (gguf_arr_len(a) != n)
			return fail(err, errlen, -EINVAL, "tokenizer.ggml.token_type: %llu values for %llu tokens",
			            (unsigned long long)gguf_arr_len(a), (unsigned long long)n);
		for (uint64_t i = 0; i < n; i++) {
			int64_t v;
			if (gguf_arr_get_int(a, i, &v) < 0)
				return fail(err, errlen, -EINVAL, "tokenizer.ggml.token_type: not an integer array");
			t->types[i] = v >= TOK_TYPE_UNDEFINED && v <= TOK_TYPE_BYTE ? (uint8_t)v : TOK_TYPE_NORMAL;
			if (t->types[i] == TOK_TYPE_UNDEFINED)
				t->types[i] = TOK_TYPE_NORMAL;
		}
	} else if (t->kind == TOK_KIND_SPM) {
		for (int32_t i = 0; i < t->n_vocab; i++) {
			size_t len;
			const char *s = tok_text(t, i, &len);
			if (spm_byte_of(s, len) >= 0)
				t->types[i] = TOK_TYPE_BYTE;
		}
	}
	return 0;
}

int tok_new_from_gguf(const struct gguf *g, struct tokenizer **out, char *err, size_t errlen)
{
	struct tokenizer *t;
	const char *model = NULL, *pre = NULL;
	int rc;

	*out = NULL;
	if (gguf_get_str(g, "tokenizer.ggml.model", &model, NULL) < 0)
		return fail(err, errlen, -EINVAL, "tokenizer.ggml.model: missing (no vocabulary in this file)");
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	if (strcmp(model, "llama") == 0) {
		t->kind = TOK_KIND_SPM;
	} else if (strcmp(model, "gpt2") == 0) {
		t->kind = TOK_KIND_BPE;
	} else {
		rc = fail(err, errlen, -ENOTSUP, "tokenizer.ggml.model: '%s' is not supported (llama, gpt2)", model);
		goto fail;
	}
	if ((rc = load_tokens(t, g, err, errlen)) < 0)
		goto fail;

	bool spm = t->kind == TOK_KIND_SPM;
	int32_t n = t->n_vocab;
	t->bos = get_id(g, "tokenizer.ggml.bos_token_id", n, spm && n > 1 ? 1 : -1);
	t->eos = get_id(g, "tokenizer.ggml.eos_token_id", n, spm && n > 2 ? 2 : -1);
	t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1);
	t->pad = get_id(g, "tokenizer.ggml.padding_token_id", n, -1);
	t->eot = get_id(g, "tokenizer.ggml.eot_token_id", n, -1);
	t->eom = get_id(g, "tokenizer.ggml.eom_token_id", n, -1);
	t->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", spm) && t->bos >= 0;
	t->add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", false) && t->eos >= 0;
	t->add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", spm);
	/* Files without token types: the special ids still are special. */
	if (t->bos >= 0 && t->types[t->bos] == TOK_TYPE_NORMAL)
		t->types[t->bos] = TOK_TYPE_CONTROL;
	if (t->eos >= 0 && t->types[t->eos] == TOK_TYPE_NORMAL)
		t->types[t->eos] = TOK_TYPE_CONTROL;
	if (t->unk >= 0 && t->types[t->unk] == TOK_TYPE_NORMAL)
		t->types[t->unk] = TOK_TYPE_UNKNOWN;

	if ((rc = build_map(t)) < 0 || (rc = build_pieces(t)) < 0 || (rc = build_special(t)) < 0)
		goto fail;
	for (unsigned b = 0; b < 256; b++)
		t->byte_tok[b] = -1;
	if (spm) {
		for (unsigned b = 0; b < 256; b++) {
			char buf[8];
			snprintf(buf, sizeof buf, "<0x%02X>", b);
			t->byte_tok[b] = tok_lookup(t, buf, 6);
			if (t->byte_tok[b] < 0) { /* llama.cpp's second choice: the byte itself */
				buf[0] = (char)b;
				t->byte_tok[b] = b < 0x80 ? tok_lookup(t, buf, 1) : -1;
			}
		}
	} else {
		if (gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL) < 0)
			pre = "default";
		if ((rc = tok_bpe_init(t, g, pre, err, errlen)) < 0)
			goto fail;
	}
	*out = t;
	return 0;
fail:
	if (rc == -ENOMEM)
		fail(err, errlen, rc, "tokenizer: out of memory");
	tok_free(t);
	return rc;
}

void tok_free(struct tokenizer *t)
{
	if (t == NULL)
		return;
	tok_bpe_fini(t);
	free(t->text);
	free(t->text_off);
	free(t->scores);
	free(t->types);
	free(t->piece);
	free(t->piece_off);
	free(t->map);
	free(t->special);
	free(t->eog);
	free(t);
}

/* ---- accessors ------------------------------------------------------------------- */

enum tok_kind tok_kind(const struct tokenizer *t) { return t->kind; }
int32_t tok_vocab_size(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const struct tokenizer *t) { return t->bos; }
int32_t tok_eos(const struct tokenizer *t) { return t->eos; }
int32_t tok_eot(const struct tokenizer *t) { return t->eot; }
int32_t tok_unk(const struct tokenizer *t) { return t->unk; }
int32_t tok_pad(const struct tokenizer *t) { return t->pad; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos; }
bool tok_add_eos(const struct tokenizer *t) { return t->add_eos; }

bool tok_is_eog(const struct tokenizer *t, int32_t id)
{
	for (int32_t i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id)
			return true;
	return false;
}

const char *tok_token_text(const struct tokenizer *t, int32_t id, size_t *len)
{
	size_t l = 0;
	const char *s = id >= 0 && id < t->n_vocab ? tok_text(t, id, &l) : NULL;
	if (len)
		*len = l;
	return s;
}

enum tok_type tok_token_type(const struct tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab ? (enum tok_type)t->types[id] : TOK_TYPE_UNDEFINED;
}

const char *tok_token_piece(const struct tokenizer *t, int32_t id, unsigned flags, size_t *len)
{
	if (id < 0 || id >= t->n_vocab) {
		*len = 0;
		return NULL;
	}
	enum tok_type ty = t->types[id];
	if ((flags & TOK_DECODE_SPECIAL) && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN))
		return tok_text(t, id, len);
	*len = t->piece_off[id + 1] - t->piece_off[id];
	return t->piece + t->piece_off[id];
}
