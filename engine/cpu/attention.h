/* Paged attention of the CPU backend over an f32 or f16 KV cache (see struct
 * attn_params in backend.h): for each query row of each sequence, softmax
 * attention over the keys and values of positions 0..pos of that row, found
 * through the sequence's block table, with grouped-query heads (query head h
 * reads kv head h / (n_heads / n_kv_heads)).
 *
 * The softmax is computed online one cache block at a time (running max and
 * sum, flash-attention style), so no score buffer grows with the context.
 * Work items are (query row, kv head) pairs, spread over OpenMP threads.
 *
 * @return 0, -EINVAL (shapes: head_dim > ATTN_MAX_HEAD_DIM, block_size >
 * ATTN_MAX_BLOCK, heads not a multiple of kv heads, seqs not sorted by q_row),
 * -ENOTSUP (kv_type other than F32 / F16).
 */
#ifndef INFERD_ENGINE_CPU_ATTENTION_H
#define INFERD_ENGINE_CPU_ATTENTION_H

#include "backend.h"

#define ATTN_MAX_HEAD_DIM 512
#define ATTN_MAX_BLOCK 256

/* n_threads 0: the OpenMP default, and one thread for calls too small to share
 * (decode at short contexts); n_threads > 0: that many threads whatever the size. */
int cpu_attention(const struct attn_params *p, int n_threads);

#endif
