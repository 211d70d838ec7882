/* inferd-mkmodel internals: the generated tokenizer vocabulary. */
#ifndef INFERD_MKMODEL_H
#define INFERD_MKMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp's values). */
enum mk_token_type {
	MK_TOKEN_NORMAL = 1,
	MK_TOKEN_UNKNOWN = 2,
	MK_TOKEN_CONTROL = 3,
	MK_TOKEN_BYTE = 6,
};

struct mk_vocab {
	char **tokens;      /* n UTF-8 strings */
	float *scores;      /* n */
	int32_t *types;     /* n, enum mk_token_type */
	size_t n;
	char **merges;      /* BPE only: n_merges "left right" strings, by rank */
	size_t n_merges;
	int32_t bos, eos, unk, pad; /* token ids, -1 when the vocabulary has none */
};

/* Smallest vocabulary mk_vocab_build() accepts for either tokenizer. */
#define MK_VOCAB_MIN 300
#define MK_VOCAB_MAX 1000000

/* Builds an n-token vocabulary: SentencePiece style (bpe false) or byte-level
 * BPE (bpe true). @return 0 or -ENOMEM / -EINVAL; free with mk_vocab_fini(). */
int mk_vocab_build(struct mk_vocab *v, bool bpe, size_t n);
void mk_vocab_fini(struct mk_vocab *v);

#endif
