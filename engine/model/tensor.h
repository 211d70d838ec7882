/* struct tensor: a typed view of up to 4-dimensional data owned elsewhere
 * (a GGUF mapping, a backend allocation, a scratch arena).
 *
 * Layout follows GGUF/GGML: ne[0] is the contiguous dimension; nb[i] is the
 * stride of dimension i in bytes. For block-quantized types nb[0] is the byte
 * size of one block and ne[0] is a whole number of blocks. Unused dims have
 * ne = 1. A tensor never owns its data.
 */
#ifndef INFERD_ENGINE_TENSOR_H
#define INFERD_ENGINE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define TENSOR_MAX_DIMS 4

struct backend;

struct tensor {
	enum dtype type;
	int n_dims;                   /* 1..TENSOR_MAX_DIMS */
	int64_t ne[TENSOR_MAX_DIMS];  /* elements per dim, ne[0] contiguous */
	size_t nb[TENSOR_MAX_DIMS];   /* stride in bytes per dim */
	void *data;                   /* not owned */
	struct backend *backend;      /* where data lives; NULL = host memory */
	const char *name;             /* for messages; may be NULL */
};

/* Fills t as a contiguous tensor of type with n_dims dims ne[] at data.
 * @return 0, or -EINVAL (bad type, n_dims, negative size, ne[0] not a whole
 * number of blocks) or -EOVERFLOW. */
int tensor_init(struct tensor *t, enum dtype type, int n_dims, const int64_t *ne, void *data);

/* Elements and bytes of a contiguous tensor. */
int64_t tensor_nelements(const struct tensor *t);
size_t tensor_nbytes(const struct tensor *t);

/* Bytes of one row (ne[0] elements). */
static inline size_t tensor_row_bytes(const struct tensor *t) { return t->nb[1]; }

/* true when ne[] of t equals the n_dims values of ne (trailing dims 1). */
bool tensor_has_shape(const struct tensor *t, int n_dims, const int64_t *ne);

#endif
