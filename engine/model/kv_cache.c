/* Paged KV cache: block pool, free list with reference counts, block tables. */
#include "kv_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct kv_cache {
	struct kv_cache_params p;
	struct backend *b;
	void *mem;          /* (n_layers, 2, n_blocks, block_size, kv_dim) elements */
	size_t layer_bytes; /* one of K or V for one layer */
	int32_t *refcount;  /* (n_blocks) */
	int32_t *free_list; /* stack of free block ids */
	int n_free;
};

int kv_cache_new(struct backend *b, const struct kv_cache_params *p, struct kv_cache **out)
{
	struct kv_cache *kv = NULL;
	int rc = -EINVAL;

	if (b == NULL || p == NULL || out == NULL || p->n_layers <= 0 || p->n_kv_heads <= 0 ||
	    p->head_dim <= 0 || p->block_size <= 0 || p->block_size > 256 || p->n_blocks <= 0)
		return -EINVAL;
	if (p->type != DTYPE_F32 && p->type != DTYPE_F16)
		return -ENOTSUP;
	size_t row = (size_t)p->n_kv_heads * (size_t)p->head_dim * kv_cache_elem_size(p->type);
	size_t blk = row * (size_t)p->block_size;
	if (blk > SIZE_MAX / (size_t)p->n_blocks / 2 / (size_t)p->n_layers)
		return -ENOMEM;
	kv = calloc(1, sizeof *kv);
	if (kv == NULL)
		return -ENOMEM;
	kv->p = *p;
	kv->b = b;
	kv->layer_bytes = blk * (size_t)p->n_blocks;
	kv->refcount = calloc((size_t)p->n_blocks, sizeof *kv->refcount);
	kv->free_list = malloc((size_t)p->n_blocks * sizeof *kv->free_list);
	rc = -ENOMEM;
	if (kv->refcount == NULL || kv->free_list == NULL)
		goto fail;
	if ((rc = backend_alloc(b, kv->layer_bytes * 2 * (size_t)p->n_layers, &kv->mem)) < 0)
		goto fail;
	/* lowest ids first out of the stack */
	for (int i = 0; i < p->n_blocks; i++)
		kv->free_list[i] = p->n_blocks - 1 - i;
	kv->n_free = p->n_blocks;
	*out = kv;
	return 0;
fail:
	kv_cache_free(kv);
	return rc;
}

void kv_cache_free(struct kv_cache *kv)
{
	if (kv == NULL)
		return;
	backend_free(kv->b, kv->mem);
	free(kv->refcount);
	free(kv->free_list);
	free(kv);
}

size_t kv_cache_elem_size(enum dtype type)
{
	return type == DTYPE_F16 ? 2 : 4;
}

const struct kv_cache_params *kv_cache_params(const struct kv_cache *kv)
{
	return &kv->p;
}

size_t kv_cache_bytes(const struct kv_cache *kv)
{
	return kv->layer_bytes * 2 * (size_t)kv->p.n_layers;
}

void *kv_cache_k(struct kv_cache *kv, int layer)
{
	if (layer < 0 || layer >= kv->p.n_layers)
		return NULL;
	return (char *)kv->mem + (size_t)layer * 2 * kv->layer_bytes;
}

void *kv_cache_v(struct kv_cache *kv, int layer)
{
	if (layer < 0 || layer >= kv->p.n_layers)
		return NULL;
	return (char *)kv->mem + ((size_t)layer * 2 + 1) * kv->layer_bytes;
}

/* ---- blocks ------------------------------------------------------------------------------ */

int kv_cache_block_alloc(struct kv_cache *kv, int32_t *out)
{
	if (kv->n_free == 0)
		return -ENOSPC;
	int32_t b = kv->free_list[--kv->n_free];
	kv->refcount[b] = 1;
	*out = b;
	return 0;
}

static bool valid_used(const struct kv_cache *kv, int32_t b)
{
	return b >= 0 && b < kv->p.n_blocks && kv->refcount[b] > 0;
}

int kv_cache_block_ref(struct kv_cache *kv, int32_t b)
{
	if (!valid_used(kv, b) || kv->refcount[b] == INT32_MAX)
		return -EINVAL;
	kv->refcount[b]++;
	return 0;
}

int kv_cache_block_unref(struct kv_cache *kv, int32_t b)
{
	if (!valid_used(kv, b))
		return -EINVAL;
	if (--kv->refcount[b] == 0)
		kv->free_list[kv->n_free++] = b;
	return 0;
}

int kv_cache_block_refcount(const struct kv_cache *kv, int32_t b)
{
	if (b < 0 || b >= kv->p.n_blocks)
		return -EINVAL;
	return kv->refcount[b];
}

int kv_cache_n_free(const struct kv_cache *kv)
{
	return kv->n_free;
}

/* ---- block tables ---------------------------------------------------------------------------- */

int kv_seq_init(struct kv_seq *s, const struct kv_cache *kv, int64_t max_tokens)
{
	memset(s, 0, sizeof *s);
	if (max_tokens <= 0)
		return -EINVAL;
	int64_t cap = (max_tokens + kv->p.block_size - 1) / kv->p.block_size;
	if (cap > INT32_MAX)
		return -EINVAL;
	s->blocks = malloc((size_t)cap * sizeof *s->blocks);
	if (s->blocks == NULL)
		return -ENOMEM;
	s->cap = (int)cap;
	return 0;
}

int kv_seq_reserve(struct kv_seq *s, struct kv_cache *kv, int64_t n_tokens)
{
	int64_t need = (n_tokens + kv->p.block_size - 1) / kv->p.block_size;
	if (need > s->cap)
		return -E2BIG;
	while (s->n_blocks < need) {
		int rc = kv_cache_block_alloc(kv, &s->blocks[s->n_blocks]);
		if (rc < 0)
			return rc;
		s->n_blocks++;
	}
	return 0;
}

void kv_seq_release(struct kv_seq *s, struct kv_cache *kv)
{
	for (int i = 0; i < s->n_blocks; i++)
		kv_cache_block_unref(kv, s->blocks[i]);
	s->n_blocks = 0;
}

void kv_seq_fini(struct kv_seq *s, struct kv_cache *kv)
{
	if (s->blocks != NULL && kv != NULL)
		kv_seq_release(s, kv);
	free(s->blocks);
	memset(s, 0, sizeof *s);
}
