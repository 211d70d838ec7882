/* CLIP tokenizer: encoding (special-token split, pre-tokenizer regex, byte-level BPE with a
 * merge heap, BOS/EOS/padding). See clip_tokenizer.h. */
#include "clip_tokenizer.h"
#include "clip_tok-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct id_sink {
	int32_t *ids;
	size_t cap, n;
	size_t stop; /* stop once n reaches this (SIZE_MAX: never) */
};

static void sink_put(struct id_sink *k, int32_t id)
{
	if (k->n < k->cap)
		k->ids[k->n] = id;
	k->n++;
}

/* Scratch of the BPE of one word of n bytes: a linked list of symbols and a min-heap of
 * candidate merges, (rank, left position) ordered, stale entries skipped when popped. A word
 * costs O(n log n), so a long run of letters in a prompt cannot stall the caller. */
struct bpe_scratch {
	int32_t *id;          /* (n) symbol ids, -1 merged away */
	int32_t *next, *prev; /* (n) neighbours, -1 none */
	struct bpe_cand {
		int32_t rank, left, right, merged;
	} *heap;              /* (3n): n - 1 initial pairs + 2 per merge */
	size_t n_heap;
};

static bool cand_less(const struct bpe_cand *a, const struct bpe_cand *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(struct bpe_scratch *b, struct bpe_cand c)
{
	size_t i = b->n_heap++;
	while (i > 0 && cand_less(&c, &b->heap[(i - 1) / 2])) {
		b->heap[i] = b->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	b->heap[i] = c;
}

static struct bpe_cand heap_pop(struct bpe_scratch *b)
{
	struct bpe_cand top = b->heap[0], last = b->heap[--b->n_heap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= b->n_heap)
			break;
		if (c + 1 < b->n_heap && cand_less(&b->heap[c + 1], &b->heap[c]))
			c++;
		if (!cand_less(&b->heap[c], &last))
			break;
		b->heap[i] = b->heap[c];
		i = c;
	}
	if (b->n_heap > 0)
		b->heap[i] = last;
	return top;
}

/* Pushes the merge of symbols left and right (adjacent) when the merges table has it. */
static void push_pair(const struct clip_tokenizer *t, struct bpe_scratch *b, int32_t left,
                      int32_t right)
{
	if (left < 0 || right < 0)
		return;
	size_t s = clip_pair_slot(t, b->id[left], b->id[right]);
	if (t->pair_key[s] != 0)
		heap_push(b, (struct bpe_cand){ t->pair_rank[s], left, right, t->pair_id[s] });
}

/* BPE over one word w[0..n) (n >= 1): lowest merge rank first, leftmost on ties. */
static void bpe_word(const struct clip_tokenizer *t, const unsigned char *w, size_t n,
                     struct bpe_scratch *b, struct id_sink *k)
{
	for (size_t i = 0; i < n; i++) {
		int32_t id = i + 1 == n ? t->byte_eow_id[w[i]] : t->byte_id[w[i]];
		b->id[i] = id < 0 ? t->eos : id; /* unknown symbol: the unk token, <|endoftext|> */
		b->prev[i] = (int32_t)i - 1;
		b->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	b->n_heap = 0;
	for (size_t i = 0; i + 1 < n; i++)
		push_pair(t, b, (int32_t)i, (int32_t)i + 1);
	while (b->n_heap > 0) {
		struct bpe_cand c = heap_pop(b);
		/* stale: a side was merged away or changed since the candidate was pushed */
		if (b->id[c.left] < 0 || b->next[c.left] != c.right || b->id[c.right] < 0)
			continue;
		size_t s = clip_pair_slot(t, b->id[c.left], b->id[c.right]);
		if (t->pair_key[s] == 0 || t->pair_rank[s] != c.rank)
			continue;
		b->id[c.left] = c.merged;
		b->id[c.right] = -1;
		b->next[c.left] = b->next[c.right];
		if (b->next[c.right] >= 0)
			b->prev[b->next[c.right]] = c.left;
		push_pair(t, b, b->prev[c.left], c.left);
		push_pair(t, b, c.left, b->next[c.left]);
	}
	for (int32_t i = 0; i >= 0; i = b->next[i])
		sink_put(k, b->id[i]);
}

static int encode(const struct clip_tokenizer *t, const char *text, size_t len,
                  struct id_sink *k)
{
	char *norm = NULL;
	size_t nn = 0;
	struct bpe_scratch b = { 0 };
	pcre2_match_data *md = NULL;
	int rc = clip_tok_normalize(text, len, &norm, &nn);
	if (rc != 0)
		return rc;
	if (nn >= INT32_MAX / 4) {
		free(norm);
		return -E2BIG;
	}
	b.id = malloc((nn + 1) * sizeof *b.id);
	b.next = malloc((nn + 1) * sizeof *b.next);
	b.prev = malloc((nn + 1) * sizeof *b.prev);
	b.heap = malloc((3 * nn + 1) * sizeof *b.heap);
	md = pcre2_match_data_create(1, NULL);
	if (b.id == NULL || b.next == NULL || b.prev == NULL || b.heap == NULL || md == NULL) {
		rc = -ENOMEM;
		goto cleanup;
	}
	/* Special-token text is split out first (as HF's added-token matching), then each
	 * segment between them runs through the regex on its own. */
	for (size_t seg = 0; seg < nn && k->n < k->stop;) {
		size_t end = seg, sp_len = 0;
		int32_t sp_id = -1;
		for (; end < nn; end++) {
			if (norm[end] != '<')
				continue;
			if (nn - end >= 15 && memcmp(norm + end, "<|startoftext|>", 15) == 0) {
				sp_id = t->bos;
				sp_len = 15;
				break;
			}
			if (nn - end >= 13 && memcmp(norm + end, "<|endoftext|>", 13) == 0) {
				sp_id = t->eos;
				sp_len = 13;
				break;
			}
		}
		for (size_t pos = seg; pos < end && k->n < k->stop;) {
			int m = pcre2_match(t->re, (PCRE2_SPTR)norm, end, pos, PCRE2_NO_UTF_CHECK, md,
			                    NULL);
			if (m == PCRE2_ERROR_NOMATCH)
				break;
			if (m < 0) {
				rc = -EINVAL; /* match limits: not reachable with this pattern */
				goto cleanup;
			}
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			size_t s = ov[0], e = ov[1];
			pos = e > s ? e : s + 1;
			if (e > s)
				bpe_word(t, (const unsigned char *)norm + s, e - s, &b, k);
		}
		if (sp_id >= 0 && k->n < k->stop)
			sink_put(k, sp_id);
		seg = end + sp_len;
	}
	rc = 0;
cleanup:
	pcre2_match_data_free(md);
	free(b.id);
	free(b.next);
	free(b.prev);
	free(b.heap);
	free(norm);
	return rc;
}

int clip_tok_encode_raw(const struct clip_tokenizer *t, const char *text, size_t len,
                        int32_t *ids, size_t cap, size_t *n_out)
{
	if (t == NULL || (text == NULL && len > 0) || (ids == NULL && cap > 0) || n_out == NULL)
		return -EINVAL;
	struct id_sink k = { .ids = ids, .cap = cap, .stop = SIZE_MAX };
	int rc = encode(t, text ? text : "", len, &k);
	*n_out = k.n;
	return rc;
}

int clip_tok_encode(const struct clip_tokenizer *t, const char *text, size_t len, int32_t pad_id,
                    int32_t *ids, int n_ctx, int *n_used)
{
	if (t == NULL || (text == NULL && len > 0) || ids == NULL || n_ctx < 2 || pad_id < 0 ||
	    pad_id >= t->n_vocab)
		return -EINVAL;
	size_t cap = (size_t)n_ctx - 2;
	struct id_sink k = { .ids = ids + 1, .cap = cap, .stop = cap };
	int rc = encode(t, text ? text : "", len, &k);
	if (rc != 0)
		return rc;
	size_t n = k.n < cap ? k.n : cap;
	ids[0] = t->bos;
	ids[n + 1] = t->eos;
	for (size_t i = n + 2; i < (size_t)n_ctx; i++)
		ids[i] = pad_id;
	if (n_used != NULL)
		*n_used = (int)n + 2;
	return 0;
}
