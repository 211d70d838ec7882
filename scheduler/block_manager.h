/* KV-cache block accounting with prefix caching.
 *
 * The KV pool holds n_blocks blocks of block_size token positions each (the engine owns the
 * memory; this module owns which block belongs to whom). A sequence's block table lists its
 * blocks in position order. Full blocks are identified by a hash of their tokens chained with
 * the hash of every block before them (xxHash XXH3-64), so two prompts that share a prefix of
 * whole blocks share those blocks: reference-counted, never written twice, and kept after their
 * last user leaves as an evictable cache (least recently used first).
 *
 * Not thread-safe: the scheduler thread owns it.
 * Errors: 0 or a negative errno (-ENOSPC when the pool cannot hold what is asked).
 */
#ifndef INFERD_SCHEDULER_BLOCK_MANAGER_H
#define INFERD_SCHEDULER_BLOCK_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

struct block_manager;

struct block_table {
	uint32_t *blocks;      /* block ids, position order */
	uint32_t n_blocks;
	uint32_t cap;
	uint32_t n_committed;  /* leading full blocks whose hash is registered (shared or sharable) */
	uint64_t last_hash;    /* chain hash of block n_committed - 1 (seed when 0 blocks) */
};

struct block_stats {
	uint32_t n_blocks;     /* the pool */
	uint32_t used;         /* referenced by at least one sequence */
	uint32_t cached;       /* unreferenced but holding a reusable prefix */
	uint32_t free;         /* empty */
	uint64_t prefix_queries;  /* full prompt blocks looked up */
	uint64_t prefix_hits;     /* of those, found in the cache */
	uint64_t evictions;
};

/* @return 0 and *out (free with block_manager_free()), -EINVAL for zero sizes, -ENOMEM. */
int block_manager_new(uint32_t n_blocks, uint32_t block_size, struct block_manager **out);
void block_manager_free(struct block_manager *bm);

uint32_t block_manager_block_size(const struct block_manager *bm);
/* Blocks that an allocation can still get: free plus evictable cached ones. */
uint32_t block_manager_available(const struct block_manager *bm);
void block_manager_stats(const struct block_manager *bm, struct block_stats *out);

void block_table_init(struct block_table *t);
/* Releases t's blocks (see block_manager_release) before calling; frees the array. */
void block_table_fini(struct block_table *t);

/* Looks up the longest run of whole cached blocks that starts t (which must be empty) with
 * tokens[0..n_tokens), takes a reference on each and appends them to t. At least one token is
 * always left to compute (the last prompt token's logits are needed). salt separates models /
 * adapters whose KV differs for equal tokens.
 * @return the number of token positions now covered (a multiple of block_size). */
uint32_t block_manager_match_prefix(struct block_manager *bm, struct block_table *t,
                                    const int32_t *tokens, uint32_t n_tokens, uint64_t salt);

/* Makes t hold at least n_positions positions, taking free blocks first, then evicting cached
 * ones (LRU). @return 0, or -ENOSPC with t unchanged, or -ENOMEM. */
int block_manager_reserve(struct block_manager *bm, struct block_table *t,
                          uint32_t n_positions);

/* How many more blocks t needs to hold n_positions. */
uint32_t block_manager_blocks_needed(const struct block_manager *bm,
                                     const struct block_table *t, uint32_t n_positions);

/* Registers the blocks of t that became full once tokens[0..n_computed) have their KV written,
 * so later prompts can share them. If an identical block is already cached, t switches to it
 * and its own copy returns to the pool. */
void block_manager_commit(struct block_manager *bm, struct block_table *t,
                          const int32_t *tokens, uint32_t n_computed, uint64_t salt);

/* Drops t's references; blocks nobody uses become cached (when registered) or free. t is left
 * empty. */
void block_manager_release(struct block_manager *bm, struct block_table *t);

/* Reference count of a block (tests and assertions). */
uint32_t block_manager_refcount(const struct block_manager *bm, uint32_t block);

#endif
