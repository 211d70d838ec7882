/* KV-cache block accounting with prefix caching (hash chains, refcounts, LRU). */
#include "block_manager.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NONE UINT32_MAX

struct block {
	uint32_t refcount;
	bool hashed;           /* registered in the prefix table */
	uint64_t hash;         /* chain hash: this block's tokens seeded with the previous hash */
	uint32_t bucket_next;  /* next block in the same hash bucket */
	uint32_t lru_prev, lru_next;
};

struct block_manager {
	uint32_t n_blocks;
	uint32_t block_size;           /* token positions per block */
	struct block *blocks;
	int32_t *tokens;               /* (n_blocks, block_size): tokens of hashed blocks */
	uint32_t *free_stack;
	uint32_t n_free;
	uint32_t lru_head, lru_tail;   /* cached (hashed, unreferenced) blocks; head = oldest */
	uint32_t n_cached;
	uint32_t *buckets;             /* hash -> first block */
	uint32_t bucket_mask;
	uint64_t prefix_queries, prefix_hits, evictions;
};

/* ---- construction ------------------------------------------------------------------------ */

int block_manager_new(uint32_t n_blocks, uint32_t block_size, struct block_manager **out)
{
	struct block_manager *bm;
	uint32_t nb = 1;

	*out = NULL;
	if (!n_blocks || !block_size || n_blocks >= NONE / 2 || block_size > 4096)
		return -EINVAL;
	while (nb < n_blocks * 2)
		nb <<= 1;
	bm = calloc(1, sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	bm->n_blocks = n_blocks;
	bm->block_size = block_size;
	bm->blocks = calloc(n_blocks, sizeof(*bm->blocks));
	bm->tokens = calloc((size_t)n_blocks * block_size, sizeof(*bm->tokens));
	bm->free_stack = malloc(n_blocks * sizeof(*bm->free_stack));
	bm->buckets = malloc(nb * sizeof(*bm->buckets));
	if (!bm->blocks || !bm->tokens || !bm->free_stack || !bm->buckets) {
		block_manager_free(bm);
		return -ENOMEM;
	}
	bm->bucket_mask = nb - 1;
	for (uint32_t i = 0; i < nb; i++)
		bm->buckets[i] = NONE;
	/* Lowest ids on top of the stack, so allocation order is predictable. */
	for (uint32_t i = 0; i < n_blocks; i++)
		bm->free_stack[i] = n_blocks - 1 - i;
	bm->n_free = n_blocks;
	bm->lru_head = bm->lru_tail = NONE;
	*out = bm;
	return 0;
}

void block_manager_free(struct block_manager *bm)
{
	if (!bm)
		return;
	free(bm->blocks);
	free(bm->tokens);
	free(bm->free_stack);
	free(bm->buckets);
	free(bm);
}

uint32_t block_manager_block_size(const struct block_manager *bm)
{
	return bm->block_size;
}

uint32_t block_manager_available(const struct block_manager *bm)
{
	return bm->n_free + bm->n_cached;
}

void block_manager_stats(const struct block_manager *bm, struct block_stats *out)
{
	out->n_blocks = bm->n_blocks;
	out->free = bm->n_free;
	out->cached = bm->n_cached;
	out->used = bm->n_blocks - bm->n_free - bm->n_cached;
	out->prefix_queries = bm->prefix_queries;
	out->prefix_hits = bm->prefix_hits;
	out->evictions = bm->evictions;
}

uint32_t block_manager_refcount(const struct block_manager *bm, uint32_t block)
{
	return block < bm->n_blocks ? bm->blocks[block].refcount : 0;
}

void block_table_init(struct block_table *t)
{
	memset(t, 0, sizeof(*t));
}

void block_table_fini(struct block_table *t)
{
	free(t->blocks);
	memset(t, 0, sizeof(*t));
}

/* ---- LRU and hash table ------------------------------------------------------------------ */

static void lru_remove(struct block_manager *bm, uint32_t id)
{
	struct block *b = &bm->blocks[id];
	if (b->lru_prev != NONE)
		bm->blocks[b->lru_prev].lru_next = b->lru_next;
	else
		bm->lru_head = b->lru_next;
	if (b->lru_next != NONE)
		bm->blocks[b->lru_next].lru_prev = b->lru_prev;
	else
		bm->lru_tail = b->lru_prev;
	b->lru_prev = b->lru_next = NONE;
	bm->n_cached--;
}

static void lru_push(struct block_manager *bm, uint32_t id)
{
	struct block *b = &bm->blocks[id];
	b->lru_next = NONE;
	b->lru_prev = bm->lru_tail;
	if (bm->lru_tail != NONE)
		bm->blocks[bm->lru_tail].lru_next = id;
	else
		bm->lru_head = id;
	bm->lru_tail = id;
	bm->n_cached++;
}

static uint32_t hash_find(const struct block_manager *bm, uint64_t hash, const int32_t *tokens)
{
	for (uint32_t id = bm->buckets[hash & bm->bucket_mask]; id != NONE;
	     id = bm->blocks[id].bucket_next) {
		/* Equal hashes are checked token by token: a collision must never share KV. */
		if (bm->blocks[id].hash == hash &&
		    !memcmp(bm->tokens + (size_t)id * bm->block_size, tokens,
		            bm->block_size * sizeof(*tokens)))
			return id;
	}
	return NONE;
}

static void hash_insert(struct block_manager *bm, uint32_t id, uint64_t hash,
                        const int32_t *tokens)
{
	struct block *b = &bm->blocks[id];
	uint32_t *head = &bm->buckets[hash & bm->bucket_mask];
	b->hashed = true;
	b->hash = hash;
	memcpy(bm->tokens + (size_t)id * bm->block_size, tokens,
	       bm->block_size * sizeof(*tokens));
	b->bucket_next = *head;
	*head = id;
}

static void hash_remove(struct block_manager *bm, uint32_t id)
{
	struct block *b = &bm->blocks[id];
	for (uint32_t *pp = &bm->buckets[b->hash & bm->bucket_mask]; *pp != NONE;
	     pp = &bm->blocks[*pp].bucket_next) {
		if (*pp == id) {
			*pp = b->bucket_next;
			break;
		}
	}
	b->hashed = false;
	b->bucket_next = NONE;
}

static uint64_t chain_hash(const struct block_manager *bm, uint64_t parent, const int32_t *tokens)
{
	return XXH3_64bits_withSeed(tokens, bm->block_size * sizeof(*tokens), parent);
}

/* ---- references -------------------------------------------------------------------------- */

static void block_ref(struct block_manager *bm, uint32_t id)
{
	if (bm->blocks[id].refcount++ == 0 && bm->blocks[id].hashed)
		lru_remove(bm, id);
}

static void block_unref(struct block_manager *bm, uint32_t id)
{
	struct block *b = &bm->blocks[id];
	if (b->refcount == 0 || --b->refcount > 0)
		return;
	if (b->hashed)
		lru_push(bm, id);
	else
		bm->free_stack[bm->n_free++] = id;
}

static int table_grow(struct block_table *t, uint32_t n)
{
	if (n <= t->cap)
		return 0;
	uint32_t cap = t->cap ? t->cap : 8;
	while (cap < n)
		cap *= 2;
	uint32_t *b = realloc(t->blocks, cap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	t->blocks = b;
	t->cap = cap;
	return 0;
}

/* ---- the API ----------------------------------------------------------------------------- */

uint32_t block_manager_match_prefix(struct block_manager *bm, struct block_table *t,
                                    const int32_t *tokens, uint32_t n_tokens, uint64_t salt)
{
	uint32_t bs = bm->block_size;
	uint32_t limit = n_tokens ? (n_tokens - 1) / bs : 0; /* keep one token to compute */
	uint64_t parent = salt;

	if (t->n_blocks != 0 || table_grow(t, limit) < 0)
		return 0;
	t->last_hash = salt;
	for (uint32_t i = 0; i < limit; i++) {
		const int32_t *blk = tokens + (size_t)i * bs;
		uint64_t h = chain_hash(bm, parent, blk);
		bm->prefix_queries++;
		uint32_t id = hash_find(bm, h, blk);
		if (id == NONE)
			break;
		bm->prefix_hits++;
		block_ref(bm, id);
		t->blocks[t->n_blocks++] = id;
		t->n_committed = t->n_blocks;
		t->last_hash = parent = h;
	}
	return t->n_blocks * bs;
}

uint32_t block_manager_blocks_needed(const struct block_manager *bm,
                                     const struct block_table *t, uint32_t n_positions)
{
	uint32_t want = (n_positions + bm->block_size - 1) / bm->block_size;
	return want > t->n_blocks ? want - t->n_blocks : 0;
}

int block_manager_reserve(struct block_manager *bm, struct block_table *t,
                          uint32_t n_positions)
{
	uint32_t need = block_manager_blocks_needed(bm, t, n_positions);

	if (!need)
		return 0;
	if (need > block_manager_available(bm))
		return -ENOSPC;
	if (table_grow(t, t->n_blocks + need) < 0)
		return -ENOMEM;
	while (need--) {
		uint32_t id;
		if (bm->n_free) {
			id = bm->free_stack[--bm->n_free];
		} else {
			id = bm->lru_head; /* the least recently used cached block */
			lru_remove(bm, id);
			hash_remove(bm, id);
			bm->evictions++;
		}
		bm->blocks[id].refcount = 1;
		t->blocks[t->n_blocks++] = id;
	}
	return 0;
}

void block_manager_commit(struct block_manager *bm, struct block_table *t,
                          const int32_t *tokens, uint32_t n_computed, uint64_t salt)
{
	uint32_t bs = bm->block_size;

	if (t->n_committed == 0)
		t->last_hash = salt;
	while (t->n_committed < t->n_blocks && (t->n_committed + 1) * bs <= n_computed) {
		uint32_t i = t->n_committed;
		const int32_t *blk = tokens + (size_t)i * bs;
		uint64_t h = chain_hash(bm, t->last_hash, blk);
		uint32_t mine = t->blocks[i];
		uint32_t cached = hash_find(bm, h, blk);

		if (cached == NONE) {
			if (!bm->blocks[mine].hashed)
				hash_insert(bm, mine, h, blk);
		} else if (cached != mine) {
			/* Someone computed the same block meanwhile: share theirs. */
			block_ref(bm, cached);
			block_unref(bm, mine);
			t->blocks[i] = cached;
		}
		t->last_hash = h;
		t->n_committed++;
	}
}

void block_manager_release(struct block_manager *bm, struct block_table *t)
{
	/* Last block first: the LRU then evicts a chain's tail before its (more shared) head. */
	for (uint32_t i = t->n_blocks; i-- > 0;)
		block_unref(bm, t->blocks[i]);
	t->n_blocks = 0;
	t->n_committed = 0;
	t->last_hash = 0;
}
