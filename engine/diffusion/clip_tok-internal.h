/* Shared by clip_tokenizer.c (loading), clip_tok_encode.c and clip_tok_norm.c. */
#ifndef INFERD_ENGINE_CLIP_TOK_INTERNAL_H
#define INFERD_ENGINE_CLIP_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

struct clip_tokenizer {
	int32_t n_vocab;         /* largest id + 1 */
	char **text;             /* (n_vocab) token text or NULL for unused ids */
	size_t *text_len;        /* (n_vocab) */
	int32_t *str_tab;        /* (str_cap) open addressing over text, -1 empty */
	size_t str_cap;          /* power of two */
	uint64_t *pair_key;      /* (pair_cap) (a << 32 | b) + 1, 0 empty */
	int32_t *pair_rank;      /* (pair_cap) merge rank */
	int32_t *pair_id;        /* (pair_cap) id of the merged token */
	size_t pair_cap;         /* power of two */
	int32_t byte_id[256];    /* token of a byte's character, -1 none */
	int32_t byte_eow_id[256];/* token of a byte's character + "</w>", -1 none */
	int32_t bos, eos;
	pcre2_code *re;
};

static inline uint64_t clip_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Slot of pair (a, b): its entry or the empty slot where it belongs. */
static inline size_t clip_pair_slot(const struct clip_tokenizer *t, int32_t a, int32_t b)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	size_t mask = t->pair_cap - 1;
	size_t i = clip_mix64(key) & mask;
	while (t->pair_key[i] != 0 && t->pair_key[i] != key)
		i = (i + 1) & mask;
	return i;
}

/* CLIP's text clean-up: invalid UTF-8 -> U+FFFD, canonical composition of adjacent pairs
 * (NFC without reordering of marks), simple lower-case mapping, runs of Unicode
 * White_Space -> one ' ', ends stripped. *out is valid UTF-8, NUL-terminated, free() it.
 * @return 0 or -ENOMEM. */
int clip_tok_normalize(const char *text, size_t len, char **out, size_t *out_len);

/* Canonical pair compositions (clip_tok_nfc.c, generated): (first, second, composite),
 * sorted by (first, second). */
extern const uint32_t clip_nfc_pairs[][3];
extern const size_t clip_nfc_n_pairs;

/* GPT-2's byte-to-unicode character of byte b, UTF-8 into s (>= 2 bytes); returns its length. */
size_t clip_byte_char(int b, char *s);

#endif
