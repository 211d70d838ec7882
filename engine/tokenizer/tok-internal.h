/* Private structures shared by the tokenizer's files (tok_vocab.c, tok_spm.c,
 * tok_bpe.c, tok_encode.c, tok_decode.c). */
#ifndef INFERD_ENGINE_TOK_INTERNAL_H
#define INFERD_ENGINE_TOK_INTERNAL_H

#include "tokenizer.h"

#include <stdint.h>

enum tok_pre {
	TOK_PRE_NONE = 0,  /* SPM: no pre-tokenizer */
	TOK_PRE_GPT2,      /* "default", "gpt2" and unknown names with a warning-free fallback */
	TOK_PRE_LLAMA3,    /* "llama-bpe", "llama3" */
	TOK_PRE_QWEN2,     /* "qwen2" */
};

/* A BPE merge (left id, right id) -> rank and result, open addressing. */
struct tok_merge_slot {
	uint64_t key;     /* (left << 32 | right) + 1; 0 = empty */
	int32_t rank;
	int32_t result;
};

struct tokenizer {
	enum tok_kind kind;
	enum tok_pre pre;
	int32_t n_vocab;

	char *text;             /* all token texts, each NUL-terminated */
	uint32_t *text_off;     /* (n_vocab + 1) byte offsets into text; len = next - this - 1 */
	float *scores;          /* (n_vocab) */
	uint8_t *types;         /* (n_vocab) enum tok_type */
	char *piece;            /* decoded bytes of every token */
	uint32_t *piece_off;    /* (n_vocab + 1) offsets into piece */

	int32_t *map;           /* token text -> id + 1, open addressing; 0 = empty */
	uint32_t map_mask;

	int32_t byte_tok[256];  /* SPM: <0xXX>; BPE: the mapped single-byte token; -1 if none */

	struct tok_merge_slot *merges;
	uint32_t merge_mask;
	void *re;               /* pcre2_code_8 * of the pre-tokenizer (BPE) */

	int32_t *special;       /* ids matched in the text: by first byte, then longest first */
	int32_t n_special;
	int32_t special_start[257]; /* special[special_start[b] .. special_start[b + 1]) start with b */

	int32_t *eog;           /* end-of-generation ids */
	int32_t n_eog;

	int32_t bos, eos, eot, eom, unk, pad;
	bool add_bos, add_eos, add_space_prefix, ignore_merges;
};

/* Output of an encoding: counts every id, stores the first cap. */
struct tok_out {
	int32_t *ids;
	size_t cap, n;
};

static inline void tok_out_push(struct tok_out *o, int32_t id)
{
	if (o->n < o->cap)
		o->ids[o->n] = id;
	o->n++;
}

static inline const char *tok_text(const struct tokenizer *t, int32_t id, size_t *len)
{
	*len = t->text_off[id + 1] - t->text_off[id] - 1;
	return t->text + t->text_off[id];
}

/* FNV-1a over bytes. */
static inline uint32_t tok_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when s[0] does not
 * start one (invalid lead byte, bad continuation, overlong, surrogate, > U+10FFFF
 * or truncated). */
size_t tok_utf8_valid_len(const unsigned char *s, size_t len);
/* Like tok_utf8_valid_len() but tells a truncated-yet-valid-so-far sequence
 * apart: returns the sequence length (2..4) when s[0..len) is a valid prefix
 * of one, so *incomplete is set; 0 when invalid. */
size_t tok_utf8_check(const unsigned char *s, size_t len, bool *incomplete);

/* Encoders of one raw text fragment (no special tokens inside). */
int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool space_prefix,
                   struct tok_out *out);
int tok_bpe_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_out *out);

/* BPE set-up, called by tok_new_from_gguf(): merges and the pre-tokenizer. */
int tok_bpe_init(struct tokenizer *t, const struct gguf *g, const char *pre, char *err,
                 size_t errlen);
void tok_bpe_fini(struct tokenizer *t);
/* GPT-2 byte-to-unicode table: the code point byte b stands for. */
uint32_t tok_bpe_byte_cp(unsigned b);

#endif
