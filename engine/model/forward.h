/* The batched forward pass of a llama-family model.
 *
 * One call runs every new token of every sequence of the batch together: the
 * tokens are stacked as rows of one activation matrix, so each weight matrix
 * is read once per call (the weight matmuls see n_tokens rows), while the
 * attention runs per sequence over its own context in the paged KV cache.
 * Decoding one sequence is the batch of one sequence with one token.
 *
 * Before the call, the caller gives each sequence a block table covering
 * positions [0, pos + n_tokens) (kv_seq_reserve() or the scheduler); the call
 * writes the K/V of the new tokens into those blocks and reads the earlier
 * positions [0, pos) from them.
 */
#ifndef INFERD_ENGINE_FORWARD_H
#define INFERD_ENGINE_FORWARD_H

#include <stdint.h>

#include "kv_cache.h"
#include "llama.h"

enum fwd_logits {
	FWD_LOGITS_NONE = 0,  /* prefill chunk whose logits nobody needs */
	FWD_LOGITS_LAST = 1,  /* the last new token's (generation) */
	FWD_LOGITS_ALL = 2,   /* every new token's (scoring, tests) */
};

struct fwd_seq {
	const int32_t *tokens;       /* (n_tokens) token ids < n_vocab */
	int32_t n_tokens;            /* >= 1 */
	int32_t pos;                 /* position of tokens[0]; [0, pos) are in the cache */
	const int32_t *block_table;  /* (n_blocks) ids of kv cache blocks */
	int32_t n_blocks;            /* n_blocks * block_size >= pos + n_tokens */
	enum fwd_logits logits;
};

/* Number of logits rows a batch produces: the sum over sequences of 0, 1 or n_tokens. */
int64_t fwd_n_logits(const struct fwd_seq *seqs, int n_seqs);

/* Runs the batch. logits: (fwd_n_logits(), n_vocab) floats, rows in sequence
 * order then token order; may be NULL when no sequence asks for logits.
 * @return 0; -EINVAL (bad token id, block table too short or with a bad block
 * id, kv cache not made for this model, n_tokens < 1), -E2BIG (more than
 * max_batch_tokens tokens), or a backend error. On error the logits are
 * undefined and the new positions' cache slots may have been written. */
int llama_forward(struct llama_model *m, struct kv_cache *kv, const struct fwd_seq *seqs,
                  int n_seqs, float *logits);

/* Nano-batching: the batch split in two lanes that run side by side (see llama_forward.c). */
struct fwd_nano {
	double split;        /* share of the batch's tokens in lane 0, in (0, 1) */
	int64_t min_tokens;  /* batches with fewer tokens run as one lane */
	int threads[2];      /* threads of each lane (0: one) */
};

/* llama_forward() with the batch split in two nano-batches by sequences (whole sequences go
 * to one lane), overlapping one lane's attention with the other's projections. Same results
 * and errors as llama_forward(); batches below min_tokens or of one sequence run unsplit. */
int llama_forward_nano(struct llama_model *m, struct kv_cache *kv, const struct fwd_seq *seqs,
                       int n_seqs, float *logits, const struct fwd_nano *nano);

#endif
