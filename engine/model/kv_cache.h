/* Paged KV cache: a pool of fixed-size blocks allocated once at start-up.
 *
 * A block holds block_size consecutive positions of one sequence, for every
 * layer, K and V: layer l's K data of block b is
 *   kv_cache_k(kv, l) + b * block_size * kv_dim        (block_size, kv_dim) elements
 * where kv_dim = n_kv_heads * head_dim. A sequence's block table lists its
 * block ids in position order: position p lives in block table[p / block_size]
 * at slot p % block_size.
 *
 * Blocks are reference counted so that later prefix sharing can map one block
 * into several tables: alloc gives a block with refcount 1, ref adds one,
 * unref drops one and returns the block to the free list at 0. Which blocks a
 * sequence gets (and eviction) is the scheduler's policy; kv_seq_* below is a
 * minimal per-sequence helper for tests and single-sequence tools.
 *
 * Not thread-safe: one owner (the scheduler thread) allocates and frees.
 * Errors: 0 or a negative errno code.
 */
#ifndef INFERD_ENGINE_KV_CACHE_H
#define INFERD_ENGINE_KV_CACHE_H

#include <stdint.h>

#include "backend.h"

struct kv_cache_params {
	int n_layers;
	int n_kv_heads;
	int head_dim;
	int block_size;   /* tokens per block, 1..256 */
	int n_blocks;     /* blocks in the pool */
	enum dtype type;  /* DTYPE_F32 or DTYPE_F16 (half the memory, converted on store) */
};

struct kv_cache;

/* Allocates the pool from backend b (kept by pointer; must outlive the cache).
 * @return 0 and *out (free with kv_cache_free()), -EINVAL for bad params,
 * -ENOTSUP for a type other than F32/F16, -ENOMEM. */
int kv_cache_new(struct backend *b, const struct kv_cache_params *p, struct kv_cache **out);
void kv_cache_free(struct kv_cache *kv); /* accepts NULL */

const struct kv_cache_params *kv_cache_params(const struct kv_cache *kv);
/* Bytes per element of a cache of this type (4 for F32, 2 for F16). */
size_t kv_cache_elem_size(enum dtype type);
/* Bytes of the whole pool. */
size_t kv_cache_bytes(const struct kv_cache *kv);

/* Layer l's K / V pool: (n_blocks, block_size, kv_dim) elements; NULL if l is out of range. */
void *kv_cache_k(struct kv_cache *kv, int layer);
void *kv_cache_v(struct kv_cache *kv, int layer);

/* Blocks: alloc (-ENOSPC when none is free), ref, unref (frees at 0). */
int kv_cache_block_alloc(struct kv_cache *kv, int32_t *out);
int kv_cache_block_ref(struct kv_cache *kv, int32_t block);
int kv_cache_block_unref(struct kv_cache *kv, int32_t block);
int kv_cache_block_refcount(const struct kv_cache *kv, int32_t block); /* -EINVAL if bad id */
int kv_cache_n_free(const struct kv_cache *kv);

/* ---- one sequence's block table ------------------------------------------------------ */

struct kv_seq {
	int32_t *blocks;  /* (cap) block ids; the first n_blocks are in use */
	int n_blocks;
	int cap;
};

/* Table for up to max_tokens positions (malloc once here). @return 0, -ENOMEM, -EINVAL. */
int kv_seq_init(struct kv_seq *s, const struct kv_cache *kv, int64_t max_tokens);
/* Allocates blocks until positions [0, n_tokens) are covered. @return 0, -ENOSPC
 * (pool empty; blocks got so far stay in the table), -E2BIG (beyond cap). */
int kv_seq_reserve(struct kv_seq *s, struct kv_cache *kv, int64_t n_tokens);
/* Unrefs every block and empties the table. */
void kv_seq_release(struct kv_seq *s, struct kv_cache *kv);
/* Releases and frees the table; accepts a zeroed struct. */
void kv_seq_fini(struct kv_seq *s, struct kv_cache *kv);

#endif
