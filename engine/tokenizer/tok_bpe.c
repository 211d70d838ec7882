/* Byte-level BPE (GPT-2 style): a PCRE2 pre-tokenizer regex splits the text
 * into words; each word starts as one symbol per byte (the token of the byte's
 * GPT-2 code point) and the adjacent pair with the lowest merge rank is merged
 * until no listed merge applies (ties: the leftmost pair), as HF tokenizers'
 * BPE model and llama.cpp's llm_tokenizer_bpe do. */
#include "tok-internal.h"

#include "gguf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the byte table and the pre-tokenizers ----------------------------------------- */

uint32_t tok_bpe_byte_cp(unsigned b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	/* The other 68 bytes map to U+0100 + their rank among themselves. */
	if (b <= 32)
		return 256 + b;
	if (b == 127)
		return 256 + 33;
	if (b <= 160)
		return 256 + 34 + (b - 128);
	return 256 + 67; /* 173 */
}

static const char re_gpt2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] =
	"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
	"\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
	"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
	"\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const struct {
	const char *name;
	enum tok_pre pre;
} pre_names[] = {
	{ "default", TOK_PRE_GPT2 }, { "gpt2", TOK_PRE_GPT2 },     { "gpt-2", TOK_PRE_GPT2 },
	{ "llama-bpe", TOK_PRE_LLAMA3 }, { "llama3", TOK_PRE_LLAMA3 }, { "llama-v3", TOK_PRE_LLAMA3 },
	{ "qwen2", TOK_PRE_QWEN2 },
};

/* ---- merges ------------------------------------------------------------------------ */

static struct tok_merge_slot *merge_find(const struct tokenizer *t, int32_t l, int32_t r)
{
	uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
	uint32_t h = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & t->merge_mask;
	for (;; h = (h + 1) & t->merge_mask) {
		struct tok_merge_slot *s = &t->merges[h];
		if (s->key == key || s->key == 0)
			return s;
	}
}

static int load_merges(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
{
	const struct gguf_arr *a;
	if (gguf_get_arr(g, "tokenizer.ggml.merges", &a) < 0 || gguf_arr_type(a) != GGUF_VTYPE_STRING) {
		if (err)
			snprintf(err, errlen, "tokenizer.ggml.merges: missing or not a string array");
		return -EINVAL;
	}
	uint64_t n = gguf_arr_len(a);
	if (n > (uint64_t)INT32_MAX / 4) {
		if (err)
			snprintf(err, errlen, "tokenizer.ggml.merges: %llu merges", (unsigned long long)n);
		return -EINVAL;
	}
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap <<= 1;
	t->merges = calloc(cap, sizeof *t->merges);
	if (t->merges == NULL)
		return -ENOMEM;
	t->merge_mask = cap - 1;

	char *buf = NULL;
	size_t bufcap = 0;
	for (uint64_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		gguf_arr_get_str(a, i, &s, &len);
		const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
		if (sp == NULL)
			continue; /* malformed: ignored, as llama.cpp would fail to use it */
		size_t ll = (size_t)(sp - s), rl = len - ll - 1;
		int32_t l = tok_lookup(t, s, ll), r = tok_lookup(t, sp + 1, rl);
		if (ll + rl > bufcap) {
			bufcap = 2 * (ll + rl);
			char *nb = realloc(buf, bufcap);
			if (nb == NULL) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		memcpy(buf, s, ll);
		memcpy(buf + ll, sp + 1, rl);
		int32_t m = tok_lookup(t, buf, ll + rl);
		if (l < 0 || r < 0 || m < 0)
			continue; /* a merge whose parts or result are not tokens can never apply */
		struct tok_merge_slot *slot = merge_find(t, l, r);
		if (slot->key == 0) {
			slot->key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
			slot->rank = (int32_t)i;
			slot->result = m;
		}
	}
	free(buf);
	return 0;
}

int tok_bpe_init(struct tokenizer *t, const struct gguf *g, const char *pre, char *err,
                 size_t errlen)
{
	int rc;
	t->pre = TOK_PRE_NONE;
	for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
		if (strcmp(pre, pre_names[i].name) == 0)
			t->pre = pre_names[i].pre;
	if (t->pre == TOK_PRE_NONE) {
		if (err)
			snprintf(err, errlen, "tokenizer.ggml.pre: '%s' is not supported "
			         "(default, gpt2, llama-bpe, qwen2)", pre);
		return -ENOTSUP;
	}
	t->ignore_merges = t->pre == TOK_PRE_LLAMA3;
	for (unsigned b = 0; b < 256; b++) {
		char u[2];
		uint32_t cp = tok_bpe_byte_cp(b);
		size_t n = 1;
		if (cp < 0x80) {
			u[0] = (char)cp;
		} else {
			u[0] = (char)(0xc0 | (cp >> 6));
			u[1] = (char)(0x80 | (cp & 0x3f));
			n = 2;
		}
		t->byte_tok[b] = tok_lookup(t, u, n);
	}
	if ((rc = load_merges(t, g, err, errlen)) < 0)
		return rc;

	const char *re = t->pre == TOK_PRE_LLAMA3 ? re_llama3 : t->pre == TOK_PRE_QWEN2 ? re_qwen2 : re_gpt2;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
	                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo,
	                                 NULL);
	if (code == NULL) {
		if (err)
			snprintf(err, errlen, "tokenizer: PCRE2 cannot compile the %s pre-tokenizer (error %d at %zu)",
			         pre, ec, (size_t)eo);
		return -ENOTSUP;
	}
	pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
	t->re = code;
	return 0;
}

void tok_bpe_fini(struct tokenizer *t)
{
	pcre2_code_free((pcre2_code *)t->re);
	t->re = NULL;
	free(t->merges);
	t->merges = NULL;
}

/* ---- one word ---------------------------------------------------------------------- */

struct bsym {
	int32_t prev, next, id; /* id -1: a byte without a token */
	bool live;
};

struct bpair {
	int32_t rank, left, right, lid, rid;
};

static bool pair_before(const struct bpair *a, const struct bpair *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

struct bscratch {
	struct bsym *sym;
	struct bpair *heap;
	size_t nheap;
	char *mapped;
};

static void pair_push(const struct tokenizer *t, struct bscratch *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0 || w->sym[l].id < 0 || w->sym[r].id < 0)
		return;
	const struct tok_merge_slot *m = merge_find(t, w->sym[l].id, w->sym[r].id);
	if (m->key == 0)
		return;
	struct bpair p = { .rank = m->rank, .left = l, .right = r, .lid = w->sym[l].id, .rid = w->sym[r].id };
	size_t i = w->nheap++;
	while (i > 0) {
		size_t q = (i - 1) / 2;
		if (!pair_before(&p, &w->heap[q]))
			break;
		w->heap[i] = w->heap[q];
		i = q;
	}
	w->heap[i] = p;
}

static struct bpair pair_pop(struct bscratch *w)
{
	struct bpair top = w->heap[0], last = w->heap[--w->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= w->nheap)
			break;
		if (c + 1 < w->nheap && pair_before(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!pair_before(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (w->nheap)
		w->heap[i] = last;
	return top;
}

static void encode_word(const struct tokenizer *t, const unsigned char *s, size_t n,
                        struct bscratch *w, struct tok_out *out)
{
	if (t->ignore_merges) { /* the whole word is a token: take it (llama-3) */
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t cp = tok_bpe_byte_cp(s[i]);
			if (cp < 0x80) {
				w->mapped[o++] = (char)cp;
			} else {
				w->mapped[o++] = (char)(0xc0 | (cp >> 6));
				w->mapped[o++] = (char)(0x80 | (cp & 0x3f));
			}
		}
		int32_t id = tok_lookup(t, w->mapped, o);
		if (id >= 0) {
			tok_out_push(out, id);
			return;
		}
	}
	for (size_t i = 0; i < n; i++)
		w->sym[i] = (struct bsym){ .prev = (int32_t)i - 1, .next = (int32_t)i + 1,
		                           .id = t->byte_tok[s[i]], .live = true };
	w->sym[n - 1].next = -1;
	w->nheap = 0;
	for (size_t i = 1; i < n; i++)
		pair_push(t, w, (int32_t)i - 1, (int32_t)i);
	while (w->nheap) {
		struct bpair p = pair_pop(w);
		struct bsym *l = &w->sym[p.left], *r = &w->sym[p.right];
		if (!l->live || !r->live || l->next != p.right || l->id != p.lid || r->id != p.rid)
			continue; /* stale */
		l->id = merge_find(t, p.lid, p.rid)->result;
		r->live = false;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = p.left;
		pair_push(t, w, l->prev, p.left);
		pair_push(t, w, p.left, l->next);
	}
	for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
		if (w->sym[i].id >= 0)
			tok_out_push(out, w->sym[i].id);
		else if (t->unk >= 0)
			tok_out_push(out, t->unk);
	}
}

/* ---- a fragment: pre-tokenize, then each word -------------------------------------- */

int tok_bpe_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_out *out)
{
	if (len == 0)
		return 0;
	int rc = -ENOMEM;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	/* Scratch for the longest possible word (the whole text): every merge queues
	 * at most two pairs, so 3 n heap entries suffice. */
	struct bscratch w = {
		.sym = malloc(len * sizeof *w.sym),
		.heap = malloc(3 * len * sizeof *w.heap),
		.mapped = malloc(2 * len),
	};
	if (md == NULL || w.sym == NULL || w.heap == NULL || w.mapped == NULL)
		goto out;

	const unsigned char *s = (const unsigned char *)text;
	size_t pos = 0;
	while (pos < len) {
		int m = pcre2_match((const pcre2_code *)t->re, s, len, pos, 0, md, NULL);
		size_t ms = len, me = len;
		if (m > 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			ms = ov[0];
			me = ov[1];
		}
		if (ms > pos) /* invalid UTF-8 the regex skipped: a word of its own */
			encode_word(t, s + pos, ms - pos, &w, out);
		if (me > ms)
			encode_word(t, s + ms, me - ms, &w, out);
		else if (ms < len) /* an empty match cannot happen with these regexes; step on */
			encode_word(t, s + ms, 1, &w, out), me = ms + 1;
		pos = me;
	}
	rc = 0;
out:
	pcre2_match_data_free(md);
	free(w.sym);
	free(w.heap);
	free(w.mapped);
	return rc;
}
